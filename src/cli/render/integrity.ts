/** `verify`, `checkpoint` and `rebuild`: what they report about the hash chain and the projections. */
import type { Checkpoint, CheckpointCheck } from '../../events/checkpoint.js';
import type { VerifyResult } from '../../events/chain.js';
import type { Ledger } from '../../projections/ledger.js';

type Rebuild = ReturnType<Ledger['rebuild']>;

/** `verify`: the chain's verdict, then one line per checkpoint checked. */
export function verifyText(r: VerifyResult, checks: CheckpointCheck[] | undefined): string {
  return [r.message, ...(checks ?? []).map((c) => c.message)].join('\n');
}

/** `checkpoint --out`: what was written where. */
export function checkpointWrittenText(db: string, t: { checkpoint: Checkpoint; file?: string }): string {
  return `checkpoint of ${db} at position ${t.checkpoint.position} (head ${t.checkpoint.head})${t.checkpoint.signature ? `, signed with key ${t.checkpoint.signature.key.slice(0, 16)}…` : ''}, written to ${t.file}`;
}

export function rebuildJson(r: Rebuild, only: boolean): unknown {
  return {
    events: r.events,
    ...(only ? { projections: r.projections } : {}),
    mismatches: r.mismatches,
    chain: { ok: r.chain.ok, ...(r.chain.ok ? {} : { firstBad: r.chain.firstBad, problem: r.chain.problem }), message: r.chain.message },
  };
}

/** The warning (standard error) of `rebuild --accept-broken-chain` over a broken chain. */
export function brokenChainWarning(r: Rebuild): string {
  return `iommu-ledger: warning: rebuilt from a broken hash chain (--accept-broken-chain): ${r.chain.message}; the projections follow the events as they are now\n`;
}

/** `rebuild`: what was rebuilt (`only`: the projections `--projection` named, and their companions) and whether the outcomes still match. */
export function rebuildText(r: Rebuild, only: boolean): string {
  return (
    (only
      ? `rebuilt the projection${r.projections.length > 1 ? 's' : ''} ${r.projections.join(', ')} from ${r.events} events (the others kept, brought to the head)`
      : `rebuilt the projections from ${r.events} events`) +
    (r.mismatches ? `; ${r.mismatches} stored outcome(s) differ from what the core computes now` : '; every stored outcome matches the core')
  );
}
