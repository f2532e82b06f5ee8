import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Ledger, PROJECTION_NAMES, type Outcome } from '../../src/projections/ledger.js';
import { Queries } from '../../src/projections/queries.js';
import { historyArb, PROFILE_NAMES, projectionSnapshot, tempDb } from './helpers.js';

/** What a caller learns from an append (the outcome as JSON: bigints as text). */
const shown = (outs: Outcome[]) =>
  JSON.parse(
    JSON.stringify(
      outs.map(({ index: _i, ...o }) => o),
      (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
    ),
  ) as unknown;

/** The domains' stream rows (what the ledger keeps of each domain beside the projections). */
const streams = (l: Ledger) =>
  l.db.prepare('SELECT name, version, max_span, invalidations, invalidated_bytes, destroyed_at FROM streams ORDER BY id').safeIntegers(true).all();

/** The pages of every domain at a few positions, as `stateAt` answers from the run log. */
function statesAt(path: string): unknown[] {
  const q = new Queries(path);
  const out: unknown[] = [];
  const last = q.lastPosition;
  for (const d of q.domains()) {
    for (const p of [1, Math.ceil(last / 3), Math.ceil((2 * last) / 3), last]) {
      if (p < d.createdAt) continue;
      out.push([d.name, p, q.stateAt(d.name, p).pages.map((x) => `${x.iova}:${x.paddr}:${x.pageSize}:${x.count}:${x.mappedBy}:${x.validFrom}:${x.row}`)]);
    }
  }
  q.close();
  return out;
}

describe('deferred projections (LedgerOptions.deferProjections)', () => {
  it('leave, once written, the tables and answers of a ledger that writes them in every transaction, whatever the batches, crashes, reopenings and second writers', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PROFILE_NAMES).chain((p) => historyArb(p, 50)),
        fc.integer({ min: 1, max: 12 }),
        fc.array(
          fc.record({
            who: fc.integer({ min: 0, max: 1 }),
            n: fc.integer({ min: 1, max: 4 }),
            then: fc.constantFrom('go-on', 'go-on', 'go-on', 'crash', 'close', 'project', 'rebuild', 'rebuild-some'),
          }),
          { minLength: 1, maxLength: 40, size: 'max' },
        ),
        fc.boolean(),
        fc.integer({ min: 1, max: 12 }),
        (cmds, defer, turns, secondDefers, snapshotEvery) => {
          const path = tempDb();
          const open = (who: number) => new Ledger(path, who === 0 || secondDefers ? { deferProjections: defer, snapshotEvery } : { snapshotEvery });
          const writers = [open(0), open(1)];
          const outs: Outcome[] = [];
          let i = 0;
          for (let t = 0; i < cmds.length; t++) {
            const turn = turns[t % turns.length]!;
            const l = writers[turn.who]!;
            outs.push(...l.appendRaw(cmds.slice(i, i + turn.n)));
            i += turn.n;
            if (turn.then === 'crash') {
              // The process dies: the events are stored, what was deferred is not.
              l.store.close();
              writers[turn.who] = open(turn.who);
            } else if (turn.then === 'close') {
              l.close();
              writers[turn.who] = open(turn.who);
            } else if (turn.then === 'project') l.projectNow();
            else if (turn.then === 'rebuild') l.rebuild();
            // One projection (and what shares a table with it) rebuilt: the others catch up in the same fold.
            else if (turn.then === 'rebuild-some') l.rebuild(undefined, { projections: [PROJECTION_NAMES[t % PROJECTION_NAMES.length]!] });
          }
          for (const l of writers) l.close();
          const one = new Ledger(tempDb(), { snapshotEvery });
          const want: Outcome[] = [];
          for (const c of cmds) want.push(...one.appendRaw([c]));
          expect(shown(outs)).toEqual(shown(want));
          // A crashed writer's projections are behind the log: a ledger brings them to the head
          // (with the tests' snapshot cadence; queries would use the default one).
          const l = new Ledger(path, { snapshotEvery });
          l.projectNow();
          expect(l.unprojectedEvents).toBe(0);
          expect(statesAt(path)).toEqual(statesAt(one.store.path));
          expect(projectionSnapshot(l.db)).toEqual(projectionSnapshot(one.db));
          expect(streams(l)).toEqual(streams(one));
          one.close();
          expect(l.rebuild().mismatches).toBe(0);
          const again = new Ledger(one.store.path);
          expect(projectionSnapshot(l.db)).toEqual(projectionSnapshot(again.db));
          again.close();
          l.close();
        },
      ),
      { numRuns: Number(process.env.DEFER_RUNS ?? 40) },
    );
  });
});

describe('deferred projections, step by step', () => {
  const cmds = [
    { op: 'domain', domain: 'd', profile: 'intel-vtd' },
    { op: 'map', domain: 'd', iova: '0x200000', paddr: '0x40000000', size: '2M', caller: 'a' },
    { op: 'unmap', domain: 'd', iova: '0x200000', size: '4K', caller: 'a' }, // over-unmaps the 2M page
    { op: 'map', domain: 'd', iova: '0x400000', paddr: '0x1000', size: '4K', caller: 'b' },
  ];
  const checkpoint = (l: Ledger) => l.db.prepare("SELECT position FROM checkpoints WHERE projection = 'inline'").pluck().get();
  const count = (l: Ledger, t: string) => l.db.prepare(`SELECT count(*) FROM ${t}`).pluck().get();

  it('a transaction with fewer events than the limit stores its events only; the one that reaches it writes every projection', () => {
    const l = new Ledger(tempDb(), { deferProjections: 3 });
    const outs = [l.appendRaw([cmds[0]]), l.appendRaw([cmds[1]])];
    expect(l.unprojectedEvents).toBe(2);
    expect(l.lastPosition).toBe(2);
    expect(checkpoint(l)).toBe(0);
    expect(count(l, 'runs')).toBe(0);
    // The outcome is decided at once, whether or not its projections are written.
    outs.push(l.appendRaw([cmds[2]]));
    expect(outs[2]![0]).toMatchObject({ unmapped: 0x200000n, symmetry: 'cuts' });
    expect(l.unprojectedEvents).toBe(0);
    expect(checkpoint(l)).toBe(3);
    expect(count(l, 'unmap_findings')).toBe(1);
    l.close();
  });

  it('close() writes what is deferred; a crashed ledger leaves it to the next writer, which folds the events again', () => {
    const path = tempDb();
    let l = new Ledger(path, { deferProjections: 100 });
    l.appendRaw(cmds.slice(0, 2));
    l.close();
    l = new Ledger(path);
    expect(checkpoint(l)).toBe(2);
    expect(count(l, 'runs')).toBe(1);
    l.close();
    l = new Ledger(path, { deferProjections: 100 });
    l.appendRaw([cmds[2]]);
    l.store.close(); // crash: event 3 is stored, its projections are not
    l = new Ledger(path);
    expect(checkpoint(l)).toBe(2);
    // A writer that does not defer folds event 3 again and writes it with its own.
    const out = l.appendRaw([cmds[3]]);
    expect(out[0]!.position).toBe(4);
    expect(checkpoint(l)).toBe(4);
    expect(l.db.prepare('SELECT position, caller FROM unmap_findings').all()).toEqual([{ position: 3, caller: 'a' }]);
    l.close();
  });

  it('close() that cannot write the deferred projections (the file stays busy) still closes the file, and loses nothing', () => {
    const path = tempDb();
    const before = process.env.IOMMU_LEDGER_BUSY_TIMEOUT;
    process.env.IOMMU_LEDGER_BUSY_TIMEOUT = '50';
    try {
      const l = new Ledger(path, { deferProjections: 100 });
      l.appendRaw(cmds);
      const other = new Database(path);
      other.exec('BEGIN IMMEDIATE'); // another process holds the write lock
      expect(() => l.close()).toThrow(/busy|locked/i);
      expect(l.db.open).toBe(false);
      other.exec('ROLLBACK');
      other.close();
    } finally {
      if (before === undefined) delete process.env.IOMMU_LEDGER_BUSY_TIMEOUT;
      else process.env.IOMMU_LEDGER_BUSY_TIMEOUT = before;
    }
    const m = new Ledger(path);
    m.projectNow();
    expect(checkpoint(m)).toBe(4);
    expect(m.db.prepare('SELECT position FROM unmap_findings').pluck().all()).toEqual([3]);
    m.close();
  });

  it('optimistic concurrency sees the versions of the deferred events', () => {
    const path = tempDb();
    const l = new Ledger(path, { deferProjections: 100 });
    l.appendRaw(cmds.slice(0, 3));
    expect(() => l.appendRaw([cmds[3]], { expectedVersions: { d: 2 } })).toThrow(/version/);
    expect(l.appendRaw([cmds[3]], { expectedVersions: { d: 3 } })[0]!.position).toBe(4);
    l.store.close();
    // Another ledger: the streams row is at the checkpoint (0), the domain at version 4.
    const m = new Ledger(path);
    expect(() => m.appendRaw([{ ...cmds[3], iova: '0x800000' }], { expectedVersions: { d: 0 } })).toThrow(/version/);
    expect(m.appendRaw([{ ...cmds[3], iova: '0x800000' }], { expectedVersions: { d: 4 } })[0]!.position).toBe(5);
    m.close();
  });

  it('queries wait for the projections: opened on a file whose writer crashed, they fold and write the rest first', () => {
    const path = tempDb();
    const l = new Ledger(path, { deferProjections: 100 });
    l.appendRaw(cmds);
    l.store.close();
    // Opened read-only (report, replay, migrate's source), they refuse rather than answer from behind.
    expect(() => new Queries(path, { readonly: true })).toThrow(
      /the projections are at event #0 and the log goes to #4 \(a writer deferred them and stopped before writing them\); this command reads the ledger without writing to it/,
    );
    const q = new Queries(path);
    // intel-vtd: the 4K unmap took the whole 2M page; only b's page is left.
    expect(q.stateAt('d', 4).pages.map((p) => [p.iova, p.mappedBy])).toEqual([[0x400000n, 4]]);
    expect(q.stateAt('d', 2).pages.map((p) => [p.iova, p.pageSize])).toEqual([[0x200000n, 0x200000n]]);
    expect(q.db.prepare("SELECT position FROM checkpoints WHERE projection = 'inline'").pluck().get()).toBe(4n);
    expect(q.db.prepare('SELECT count(*) FROM unmap_findings').pluck().get()).toBe(1n);
    q.close();
  });

  it('deferProjections must be a whole number of events', () => {
    expect(() => new Ledger(tempDb(), { deferProjections: -1 })).toThrow(/deferProjections: -1 is not a whole number of events/);
    expect(() => new Ledger(tempDb(), { deferProjections: 1.5 })).toThrow(/deferProjections: 1.5/);
  });
});
