import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Ledger, PROJECTION_NAMES } from '../../src/projections/ledger.js';
import { breakChainAt, rawSql, rewriteEvent } from '../reliability/tamper-helpers.js';
import { copyLedger, historyArb, PROFILE_NAMES, projectionSnapshot, tempDb } from './helpers.js';

/**
 * What was done to the file behind the ledger's back: an event changed so that it still fits (the
 * chain breaks there),
 * removed, or made unfit with the chain computed again (it holds, the event does not decode); or
 * an unfit event and a change elsewhere, before or after it (which error comes first).
 */
type Harm = { kind: 'none' } | { kind: 'change' | 'remove' | 'unfit'; at: number } | { kind: 'unfit+change'; at: number; at2: number };

const harmArb = fc.oneof(
  fc.constant<Harm>({ kind: 'none' }),
  fc.record({ kind: fc.constantFrom('change' as const, 'remove' as const, 'unfit' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('unfit+change' as const), at: fc.nat(), at2: fc.nat() }),
);

function harm(path: string, h: Harm, events: number): void {
  const pos = (n: number) => 1 + (n % events);
  if (h.kind === 'none') return;
  if (h.kind === 'remove') return rawSql(path, 'DELETE FROM events WHERE position = ?', pos(h.at));
  // Made unfit with the chain computed again from it: only a change breaks the chain.
  if (h.kind === 'unfit' || h.kind === 'unfit+change') rewriteEvent(path, pos(h.at), { data: '{"body":{}}' });
  if (h.kind === 'change' || h.kind === 'unfit+change') breakChainAt(path, pos('at2' in h ? h.at2 : h.at));
}

/** What a rebuild gave: its result and every projection row, or the error it stopped with. */
function outcome(path: string, chainThreadFrom: number, opts: { acceptBrokenChain: boolean; projections?: string[] }): unknown {
  const l = new Ledger(path, { chainThreadFrom });
  try {
    const r = l.rebuild(undefined, opts);
    return { r, rows: projectionSnapshot(l.db) };
  } catch (e) {
    return { error: (e as Error).name, message: (e as Error).message, rows: projectionSnapshot(l.db) };
  } finally {
    l.close();
  }
}

describe('rebuild with the hash chain walked on a worker thread (events/chain-check.ts)', () => {
  it('ends as the rebuild that checks the chain in its own read: the same result, rows, or error, whatever was tampered with', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PROFILE_NAMES).chain((p) => historyArb(p, 40)),
        fc.integer({ min: 1, max: 9 }),
        harmArb,
        fc.boolean(),
        fc.option(fc.subarray([...PROJECTION_NAMES], { minLength: 1 }), { nil: undefined }),
        (cmds, batch, h, acceptBrokenChain, projections) => {
          const path = tempDb();
          const l = new Ledger(path);
          for (let i = 0; i < cmds.length; i += batch) l.appendRaw(cmds.slice(i, i + batch));
          const events = l.lastPosition;
          l.close();
          harm(path, h, events);
          const other = copyLedger(path);
          const opts = { acceptBrokenChain, ...(projections ? { projections } : {}) };
          expect(outcome(path, 0, opts)).toEqual(outcome(other, Infinity, opts));
        },
      ),
      { numRuns: Number(process.env.CHAIN_THREAD_RUNS ?? 40) },
    );
  });
});
