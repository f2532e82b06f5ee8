import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/projections/ledger.js';
import { PROJECTION_TABLES } from '../../src/projections/corrupt.js';
import { LEDGER_TABLES, PROJECTIONS } from '../../src/projections/registry.js';
import { projectionSnapshot, tempDb } from './helpers.js';

describe('the registry of projections', () => {
  it('every projection table has one owner: a registered projection or, until it moves, the ledger', () => {
    const owners = [...PROJECTIONS.flatMap((p) => p.tables), ...LEDGER_TABLES];
    expect(new Set(owners).size).toBe(owners.length);
    expect([...owners].sort()).toEqual([...PROJECTION_TABLES].sort());
    expect(new Set(PROJECTIONS.map((p) => p.name)).size).toBe(PROJECTIONS.length);
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
