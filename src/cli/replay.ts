/**
 * What-if replay: the same commands under another profile or unmap behaviour, into a new
 * ledger file (the original is opened read-only), then a comparison of the two.
 */
import { existsSync } from 'node:fs';
import { formatSize } from '../core/address.js';
import { resolveProfile, type Semantics } from '../core/profile.js';
import { commandFromEvent } from '../events/recommand.js';
import { EventStore } from '../events/store.js';
import { parseCommand } from '../events/schema.js';
import { Ledger } from '../projections/ledger.js';
import { Queries } from '../projections/queries.js';
import { InputError } from './apply.js';
import { discardTemporary, publishTemporary, temporaryPathFor } from './newfile.js';

export interface ReplaySummary {
  source: string;
  out: string;
  events: number;
  before: Summary;
  after: Summary;
  report: string[];
}

interface Summary {
  overUnmaps: number;
  collateralBytes: bigint;
  leftMapped: number;
  divergences: number;
  rejected: number;
  faults: Record<string, number>;
}

/** The findings of a ledger, read only (the source of a replay is never written). */
function summarize(path: string): Summary {
  const q = new Queries(path, { readonly: true });
  try {
    const over = q.findings({ kind: 'over-unmap' });
    const faults: Record<string, number> = {};
    for (const f of q.faults()) faults[f.cause] = (faults[f.cause] ?? 0) + 1;
    const rejected = q.refusedCommands();
    return {
      overUnmaps: over.length,
      collateralBytes: over.reduce((a, f) => a + f.collateral.reduce((b, c) => b + c.size, 0n), 0n),
      leftMapped: q.findings({ kind: 'left-mapped' }).length,
      divergences: q.findings({ kind: 'divergence' }).length,
      rejected,
      faults,
    };
  } finally {
    q.close();
  }
}

export async function replayLedger(source: string, outPath: string, o: { semantics?: Semantics; profile?: string; domain?: string }): Promise<ReplaySummary> {
  if (!existsSync(source)) throw new InputError(`no ledger at ${source}`);
  if (existsSync(outPath)) throw new InputError(`${outPath} exists: replay writes a new ledger; choose another --out or remove it`);
  if (o.profile) resolveProfile(o.profile); // a clear error for an unknown name, before anything is written
  const src = new EventStore(source, { readonly: true });
  const names = src.streams().map((s) => s.name);
  if (o.domain !== undefined && !names.includes(o.domain)) {
    src.close();
    throw new InputError(`--domain ${JSON.stringify(o.domain)}: no such domain in ${source} (it holds ${names.join(', ') || 'none'})`);
  }
  // Written under a temporary name and renamed when complete: a killed replay leaves no --out.
  const tmp = temporaryPathFor(outPath);
  const dst = new Ledger(tmp);
  let events = 0;
  try {
    dst.session((add) => {
      for (const ev of src.events()) {
        const touched = o.domain === undefined || o.domain === ev.stream;
        const cmd = commandFromEvent(ev, touched ? { ...(o.semantics ? { semantics: o.semantics } : {}), ...(o.profile ? { profile: o.profile } : {}) } : {});
        add({ cmd: parseCommand(cmd) });
        events++;
      }
    });
  } catch (e) {
    dst.close();
    discardTemporary(tmp);
    throw e;
  } finally {
    src.close();
  }
  dst.close();
  publishTemporary(tmp, outPath);
  const before = summarize(source);
  const after = summarize(outPath);
  const what =
    [o.profile ? `profile ${o.profile}` : '', o.semantics ? `${o.semantics} unmap` : ''].filter(Boolean).join(', ') +
    (o.domain !== undefined ? ` for domain ${o.domain} (the others as they were)` : '');
  const rows: Array<[string, string | number, string | number]> = [
    ['over-unmaps', before.overUnmaps, after.overUnmaps],
    ['collateral bytes', formatSize(before.collateralBytes), formatSize(after.collateralBytes)],
    ['unmaps left mapped', before.leftMapped, after.leftMapped],
    ['refused commands', before.rejected, after.rejected],
    ['divergences from trace', before.divergences, after.divergences],
    ...[...new Set([...Object.keys(before.faults), ...Object.keys(after.faults)])].map((k): [string, number, number] => [
      `faults: ${k}`,
      before.faults[k] ?? 0,
      after.faults[k] ?? 0,
    ]),
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  const report = [
    `replayed ${events} events of ${source} under ${what} into ${outPath} (the original is unchanged)`,
    ...rows.map(([label, a, b]) => `  ${label.padEnd(width)} ${String(a).padStart(10)}  ->  ${String(b)}`),
    `the findings of each: iommu-ledger --db ${source} audit over-unmaps, and --db ${outPath}`,
  ];
  return { source, out: outPath, events, before, after, report };
}
