import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Ledger, LedgerError, PROJECTION_NAMES } from '../../src/projections/ledger.js';
import { PROJECTIONS, rebuildSet } from '../../src/projections/registry.js';
import { runsFromLog } from '../../src/projections/runlog.js';
import { copyLedger, historyArb, PROFILE_NAMES, projectionSnapshot, tempDb } from './helpers.js';

/**
 * Every projection row, the run snapshots' blobs, the runs the run log gives at every position
 * (its pieces are cut by the transactions that wrote them: the same runs, not the same bytes), and
 * the domains' stream rows.
 */
function everything(l: Ledger): unknown {
  const live = (c: ReturnType<typeof runsFromLog>) => Array.from(c.id.subarray(0, c.n));
  const fromLog: unknown[] = [];
  for (const d of l.db.prepare('SELECT id FROM streams ORDER BY id').pluck().all() as number[])
    for (let p = 1; p <= l.lastPosition; p++) fromLog.push(live(runsFromLog(l.db, d, p)));
  const blobs = (sql: string) =>
    l.db
      .prepare(sql)
      .safeIntegers(true)
      .all()
      .map((r) => JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(v) ? v.toString('hex') : v)));
  return {
    ...projectionSnapshot(l.db),
    run_log: fromLog,
    run_snapshots: blobs('SELECT * FROM run_snapshots ORDER BY domain, position'),
    streams: blobs('SELECT name, version, max_span, invalidations, invalidated_bytes, destroyed_at FROM streams ORDER BY id'),
  };
}

const damage = ['none', 'drop', 'empty'] as const;

/**
 * Two domains' histories interleaved (row ids are given across domains, in order of birth), the
 * second sometimes destroyed part way.
 */
const twoDomains = fc
  .tuple(
    fc.constantFrom(...PROFILE_NAMES).chain((p) => historyArb(p, 30)),
    fc.constantFrom(...PROFILE_NAMES).chain((p) => historyArb(p, 30)),
    fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
    fc.option(fc.nat(), { nil: undefined }),
  )
  .map(([a, b, pick, destroyAt]) => {
    const second: object[] = b.map((c) => ({ ...c, domain: 'd1' }));
    // Destroyed part way: what it had after that is not sent (the ledger refuses it).
    if (destroyAt !== undefined) second.splice(1 + (destroyAt % second.length), Infinity, { op: 'destroy', domain: 'd1' });
    const out: object[] = [];
    let i = 0;
    let j = 0;
    for (let k = 0; i < a.length || j < second.length; k++) out.push(j >= second.length || (i < a.length && pick[k % pick.length]) ? a[i++]! : second[j++]!);
    return out;
  });

describe('rebuilding some projections (rebuild with `projections`)', () => {
  it('leaves every table as a rebuild of all projections does, whatever was rebuilt, damaged, or left behind by deferred projections', () => {
    fc.assert(
      fc.property(
        twoDomains,
        fc.integer({ min: 1, max: 9 }),
        fc.subarray([...PROJECTION_NAMES], { minLength: 1 }),
        fc.constantFrom(...damage),
        fc.constantFrom(0, 0, 4, 1000),
        fc.integer({ min: 1, max: 12 }),
        (cmds, batch, names, harm, defer, snapshotEvery) => {
          const path = tempDb();
          const l = new Ledger(path, { deferProjections: defer, snapshotEvery });
          for (let i = 0; i < cmds.length; i += batch) l.appendRaw(cmds.slice(i, i + batch));
          // The process dies: the events are stored, what a deferring ledger held is not.
          l.store.close();
          const other = copyLedger(path);

          const some = new Ledger(path, { snapshotEvery });
          // What the projections rebuilt lost: nothing, every row, or the tables themselves.
          for (const t of rebuildSet(names).flatMap((p) => p.tables)) {
            if (harm === 'drop') some.db.exec(`DROP TABLE ${t}`);
            if (harm === 'empty') some.db.exec(`DELETE FROM ${t}`);
          }
          const r = some.rebuild(undefined, { projections: names });
          expect(r.mismatches).toBe(0);
          expect(r.projections).toEqual(rebuildSet(names).map((p) => p.name));

          const all = new Ledger(other, { snapshotEvery });
          expect(all.rebuild().projections).toEqual(PROJECTION_NAMES);
          expect(everything(some)).toEqual(everything(all));

          // Appending goes on from the rebuilt tables as from the others.
          const more = cmds.filter((c) => (c as { domain: string }).domain === 'd0' && (c as { op: string }).op !== 'domain').slice(0, 5);
          expect(some.appendRaw(more)).toEqual(all.appendRaw(more));
          expect(everything(some)).toEqual(everything(all));
          some.close();
          all.close();
        },
      ),
      { numRuns: Number(process.env.REBUILD_SOME_RUNS ?? 60) },
    );
  });

  it('takes with a projection every one that shares a table with it: findings and faults go together', () => {
    expect(rebuildSet(['findings']).map((p) => p.name)).toEqual(['findings', 'faults']);
    expect(rebuildSet(['faults']).map((p) => p.name)).toEqual(['findings', 'faults']);
    expect(rebuildSet(['hardware', 'runs']).map((p) => p.name)).toEqual(['runs', 'hardware']);
    expect(rebuildSet(PROJECTION_NAMES).length).toBe(PROJECTIONS.length);
    expect(() => rebuildSet(['runs', 'nope'])).toThrow(`"nope": no such projection (the projections are ${PROJECTION_NAMES.join(', ')})`);
  });

  it('refuses a name that is not a projection before it changes anything', () => {
    const path = tempDb();
    const l = new Ledger(path);
    l.appendRaw([
      { op: 'domain', domain: 'd', profile: 'intel-vtd' },
      { op: 'map', domain: 'd', iova: '0x200000', paddr: '0x40000000', size: '0x200000', caller: 'a' },
      { op: 'unmap', domain: 'd', iova: '0x200000', size: '0x1000', caller: 'a' },
    ]);
    const before = everything(l);
    let thrown: unknown;
    try {
      l.rebuild(undefined, { projections: ['runs', 'finding'] });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(LedgerError);
    expect((thrown as Error).message).toMatch(/^rebuild: "finding": no such projection/);
    expect(everything(l)).toEqual(before);
    l.close();
  });
});
