import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/projections/ledger.js';
import { PROJECTION_TABLES, TABLE_OWNERS } from '../../src/projections/corrupt.js';
import { LEDGER_TABLES, PROJECTIONS } from '../../src/projections/registry.js';
import { runsByRows, runsFromLog } from '../../src/projections/runlog.js';
import { projectionSnapshot, tempDb } from './helpers.js';

describe('the registry of projections', () => {
  it('every projection table has one owner: a registered projection or, for checkpoints, the ledger', () => {
    const owners = [...PROJECTIONS.flatMap((p) => p.tables), ...LEDGER_TABLES];
    expect(new Set(owners).size).toBe(owners.length);
    expect([...owners].sort()).toEqual([...PROJECTION_TABLES].sort());
    expect(new Set(PROJECTIONS.map((p) => p.name)).size).toBe(PROJECTIONS.length);
  });

  it("the owners that damage messages name (corrupt.ts TABLE_OWNERS) are the registry's", () => {
    const owners = Object.fromEntries([...PROJECTIONS.flatMap((p) => p.tables.map((t) => [t, p.name])), ...LEDGER_TABLES.map((t) => [t, undefined])]);
    expect(TABLE_OWNERS).toEqual(owners);
  });

  // A fault on collateral the caller had already asked for (covered), before the caller covers the
  // rest: the over-unmap is pending at the fault and stepped after it. The faults projection gets
  // the fault in the same batch as the later verdict, and must still leave the verdict as the fault
  // found it (pending, so not turned harmful): the same in one batch, one command per batch, and
  // after rebuild.
  const cmds = [
    { op: 'domain', domain: 'd', profile: 'intel-vtd' },
    { op: 'map', domain: 'd', iova: '0x200000', paddr: '0x40000000', size: '0x400000', caller: 'a' }, // two 2M pages
    { op: 'unmap', domain: 'd', iova: '0x200000', size: '0x1000', caller: 'a' }, // removes the first 2M page
    { op: 'unmap', domain: 'd', iova: '0x201000', size: '0x1000', caller: 'a' }, // asks for collateral (covers it)
    { op: 'fault', domain: 'd', iova: '0x201000' },
    { op: 'unmap', domain: 'd', iova: '0x202000', size: '0x1fe000', caller: 'a' }, // the rest: stepped (covered)
    { op: 'fault', domain: 'd', iova: '0x203000' }, // on a stepped over-unmap's collateral: harmful now
  ];

  it.each([cmds.length, 1, 3])('a fault settles only the verdicts given before it, whatever the batch (batches of %i)', (batch) => {
    const l = new Ledger(tempDb());
    const outs = [];
    for (let i = 0; i < cmds.length; i += batch) outs.push(...l.appendRaw(cmds.slice(i, i + batch)));
    expect(outs[4]!.faultCause).toBe('use-after-collateral-unmap');
    expect(outs[6]!.faultCause).toBe('use-after-collateral-unmap');
    const findings = () => l.db.prepare('SELECT position, step, step_why, step_pos FROM unmap_findings ORDER BY position').all();
    expect(findings()).toEqual([{ position: 3, step: 'harmful', step_why: 'fault', step_pos: 7 }]);
    expect(l.db.prepare('SELECT position, cause, cause_position FROM faults ORDER BY position').all()).toEqual([
      { position: 5, cause: 'use-after-collateral-unmap', cause_position: 3 },
      { position: 7, cause: 'use-after-collateral-unmap', cause_position: 3 },
    ]);
    const incremental = projectionSnapshot(l.db);
    l.rebuild();
    expect(projectionSnapshot(l.db)).toEqual(incremental);
    l.close();
  });

  it('without the second fault the over-unmap stays stepped, in one batch too', () => {
    const l = new Ledger(tempDb());
    l.appendRaw(cmds.slice(0, 6));
    expect(l.db.prepare('SELECT step, step_why, step_pos FROM unmap_findings').all()).toEqual([{ step: 'stepped', step_why: 'covered', step_pos: 6 }]);
    l.close();
  });

  // The findings projection writes a pending over-unmap's state as its caller's unmaps ask for
  // parts of the collateral (facts the ledger takes from its tracker at each unmap); a ledger that
  // opens the domain again takes the open case back from that row. Cut and reopened after every
  // command, the tables and the verdict are those of one batch, and of a rebuild.
  it("a pending over-unmap's state is written as it progresses, and a reopened ledger settles it the same way", () => {
    const steps = [
      { op: 'domain', domain: 'd', profile: 'intel-vtd' },
      { op: 'map', domain: 'd', iova: '0x200000', paddr: '0x40000000', size: '0x400000', caller: 'a' }, // two 2M pages
      { op: 'unmap', domain: 'd', iova: '0x200000', size: '0x1000', caller: 'a' }, // removes the first: pending
      { op: 'unmap', domain: 'd', iova: '0x201000', size: '0x1000', caller: 'a' }, // asks for some collateral
      { op: 'unmap', domain: 'd', iova: '0x202000', size: '0x1000', caller: 'a' }, // and some more
      { op: 'unmap', domain: 'd', iova: '0x203000', size: '0x1fd000', caller: 'a' }, // the rest: stepped (covered)
    ];
    const state = (l: Ledger) =>
      l.db.prepare('SELECT step, step_why, step_pos, step_state FROM unmap_findings WHERE position = 3').get() as Record<string, unknown>;
    const one = new Ledger(tempDb());
    one.appendRaw(steps);
    expect(state(one)).toEqual({ step: 'stepped', step_why: 'covered', step_pos: 6, step_state: null });

    const path = tempDb();
    for (const [i, c] of steps.entries()) {
      const l = new Ledger(path);
      l.appendRaw([c]);
      if (i === 4) expect(JSON.parse(state(l).step_state as string)).toEqual({ removedEnd: '0x400000', uncovered: [['0x203000', '0x400000']] });
      l.close();
    }
    const reopened = new Ledger(path);
    expect(projectionSnapshot(reopened.db)).toEqual(projectionSnapshot(one.db));
    reopened.rebuild();
    expect(projectionSnapshot(reopened.db)).toEqual(projectionSnapshot(one.db));
    reopened.close();
    one.close();
  });

  // The ledger gives each interval of intent its row id when it is born (the intent projection
  // writes the row later, maybe closed already): the next id is read again in every transaction,
  // so two ledgers taking turns on one file give the ids SQLite would, and snapshots name them.
  it('intent row ids follow the order of birth when two ledgers take turns on one file', () => {
    const path = tempDb();
    const a = new Ledger(path, { snapshotEvery: 2 });
    const b = new Ledger(path, { snapshotEvery: 2 });
    const map = (domain: string, iova: number, caller: string) => ({
      op: 'map',
      domain,
      iova: `0x${iova.toString(16)}`,
      paddr: `0x${iova.toString(16)}`,
      size: '0x4000',
      caller,
    });
    const unmap = (domain: string, iova: number, caller: string) => ({ op: 'unmap', domain, iova: `0x${iova.toString(16)}`, size: '0x1000', caller });
    a.appendRaw([{ op: 'domain', domain: 'x', profile: 'intel-vtd' }, map('x', 0x10000, 'p'), unmap('x', 0x11000, 'p')]);
    b.appendRaw([{ op: 'domain', domain: 'y', profile: 'intel-vtd' }, map('y', 0x10000, 'q'), unmap('y', 0x12000, 'q')]);
    a.appendRaw([map('x', 0x20000, 'p'), unmap('x', 0x10000, 'p')]);
    b.appendRaw([unmap('y', 0x10000, 'q'), map('y', 0x30000, 'r')]);
    const rows = a.db.prepare('SELECT id, domain, valid_from, valid_to FROM intent ORDER BY id').all();
    expect(rows.map((r) => (r as { id: number }).id)).toEqual(rows.map((_, i) => i + 1));
    expect(a.intentNow('x').map((i) => i.row)).toEqual(
      a.db.prepare('SELECT id FROM intent WHERE domain = 1 AND valid_to IS NULL ORDER BY iova').pluck().all() as number[],
    );
    const incremental = projectionSnapshot(a.db);
    b.close();
    a.rebuild();
    expect(projectionSnapshot(a.db)).toEqual(incremental);
    a.close();
  });

  // The same for runs rows (the runs projection writes them, with the ids the ledger gave at
  // birth), and for the run log: one-command transactions leave small pieces, merged 32 at a time
  // (a count each ledger must read again after the other wrote), and the live runs read from the
  // log at every position are those of the runs table. A fault finds the unmap the other ledger
  // stored as what removed its page.
  it('runs row ids, the run log and its small pieces stay right when two ledgers take turns on one file', () => {
    const path = tempDb();
    const a = new Ledger(path, { snapshotEvery: 1000 });
    const b = new Ledger(path, { snapshotEvery: 1000 });
    const small = a.db
      .prepare('SELECT count(*) FROM run_log WHERE small = 1 AND first_pos > (SELECT coalesce(max(position), 0) FROM run_snapshots WHERE domain = 1)')
      .pluck();
    a.appendRaw([{ op: 'domain', domain: 'x', profile: 'intel-vtd' }]);
    const at = (i: number) => `0x${(0x100000 + i * 0x10000).toString(16)}`;
    for (let i = 0; i < 120; i++) {
      const [l, m] = i % 2 ? [a, b] : [b, a];
      l.appendRaw([{ op: 'map', domain: 'x', iova: at(i), paddr: at(i), size: '0x4000', caller: 'p' }]);
      expect(small.get()).toBeLessThan(32);
      if (i % 3 === 2) m.appendRaw([{ op: 'unmap', domain: 'x', iova: at(i - 1), size: '0x2000', caller: 'p' }]);
      expect(small.get()).toBeLessThan(32);
    }
    a.appendRaw([{ op: 'map', domain: 'x', iova: '0x900000', paddr: '0x900000', size: '0x2000', caller: 'p' }]);
    b.appendRaw([{ op: 'unmap', domain: 'x', iova: '0x900000', size: '0x2000', caller: 'p' }]);
    const [fault] = a.appendRaw([{ op: 'fault', domain: 'x', iova: '0x901000' }]);
    expect(fault!.faultCause).toBe('use-after-unmap');
    const ids = a.db.prepare('SELECT id FROM runs ORDER BY id').pluck().all() as number[];
    expect(ids).toEqual(ids.map((_, i) => i + 1));
    const live = (c: ReturnType<typeof runsByRows>) => Array.from(c.id.subarray(0, c.n));
    for (let p = 1; p <= a.lastPosition; p++) expect(live(runsFromLog(a.db, 1, p))).toEqual(live(runsByRows(a.db, 1, p)));
    const incremental = projectionSnapshot(a.db);
    b.close();
    a.rebuild();
    expect(projectionSnapshot(a.db)).toEqual(incremental);
    a.close();
  });

  // The caller counts are gathered over a transaction's batches and written before it commits: a
  // transaction that fails must take what it gathered with it.
  it('a rolled-back batch leaves no caller counts behind', () => {
    const setup = [
      { op: 'domain', domain: 'd', profile: 'intel-vtd' },
      { op: 'map', domain: 'd', iova: '0x10000', paddr: '0x10000', size: '0x1000', caller: 'x' },
    ];
    // More events than the ledger hands the projections at a time, so some were applied before the failure.
    const failed: object[] = [];
    for (let i = 0; i < 100; i++) {
      failed.push({ op: 'map', domain: 'd', iova: '0x20000', paddr: '0x20000', size: '0x1000', caller: 'x' });
      failed.push({ op: 'unmap', domain: 'd', iova: '0x20000', size: '0x1000', caller: 'x' });
    }
    failed.push({ op: 'map', domain: 'nowhere', iova: '0x30000', paddr: '0x30000', size: '0x1000', caller: 'x' });
    const after = [{ op: 'unmap', domain: 'd', iova: '0x10000', size: '0x1000', caller: 'x' }];
    const a = new Ledger(tempDb());
    a.appendRaw(setup);
    expect(() => a.appendRaw(failed)).toThrow();
    a.appendRaw(after);
    const b = new Ledger(tempDb());
    b.appendRaw([...setup, ...after]);
    const counts = (l: Ledger) => l.db.prepare('SELECT caller, maps, unmaps, exact, unmap_bytes FROM caller_symmetry').all();
    expect(counts(a)).toEqual([{ caller: 'x', maps: 1, unmaps: 1, exact: 1, unmap_bytes: expect.anything() }]);
    expect(counts(a)).toEqual(counts(b));
    const incremental = projectionSnapshot(a.db);
    a.rebuild();
    expect(projectionSnapshot(a.db)).toEqual(incremental);
    a.close();
    b.close();
  });
});
