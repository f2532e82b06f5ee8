import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Domain } from '../../src/core/domain.js';
import { resolveProfile } from '../../src/core/profile.js';
import { parseCommand } from '../../src/events/schema.js';
import { explainText } from '../../src/cli/render/explain.js';
import { Ledger } from '../../src/projections/ledger.js';
import { Queries } from '../../src/projections/queries.js';
import { fromDb } from '../../src/projections/codec.js';
import { historyArb, mirroredHistoryArb, projectionSnapshot, tempDb, PROFILE_NAMES } from './helpers.js';

describe('projections', () => {
  it('rebuilt tables equal the incrementally maintained ones, whatever the batching', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PROFILE_NAMES).chain((p) => historyArb(p, 50)),
        fc.integer({ min: 1, max: 9 }),
        (cmds, batch) => {
          const path = tempDb();
          const l = new Ledger(path);
          for (let i = 0; i < cmds.length; i += batch) l.appendRaw(cmds.slice(i, i + batch));
          const incremental = projectionSnapshot(l.db);
          const r = l.rebuild();
          expect(r.mismatches).toBe(0);
          expect(projectionSnapshot(l.db)).toEqual(incremental);
          l.close();
        },
      ),
      { numRuns: 40 },
    );
  });

  it('two ledgers on one file, writing in turns (and now and then rebuilding), leave the tables one writer leaves', () => {
    // Each ledger keeps its next row ids and the caller totals it wrote from one transaction to the
    // next while no other connection has written (SQLite's data_version): the other's commits and
    // rebuilds must make it read them again.
    fc.assert(
      fc.property(
        fc.constantFrom(...PROFILE_NAMES).chain((p) => historyArb(p, 50)),
        fc.array(fc.record({ who: fc.integer({ min: 0, max: 1 }), n: fc.integer({ min: 1, max: 4 }), rebuild: fc.boolean() }), {
          minLength: 1,
          maxLength: 60,
          size: 'max',
        }),
        (cmds, turns) => {
          const path = tempDb();
          const writers = [new Ledger(path), new Ledger(path)];
          let i = 0;
          for (let t = 0; i < cmds.length; t++) {
            const turn = turns[t % turns.length]!;
            writers[turn.who]!.appendRaw(cmds.slice(i, i + turn.n));
            i += turn.n;
            if (turn.rebuild && t % 5 === 4) writers[1 - turn.who]!.rebuild();
          }
          const [a, b] = writers as [Ledger, Ledger];
          const shared = projectionSnapshot(a.db);
          b.close();
          const one = new Ledger(tempDb());
          for (let j = 0; j < cmds.length; j++) one.appendRaw([cmds[j]]);
          const single = projectionSnapshot(one.db);
          one.close();
          // The positions and ids are the same whoever wrote; only the stream rows' clocks differ (none is in the snapshot).
          expect(shared).toEqual(single);
          expect(a.rebuild().mismatches).toBe(0);
          expect(projectionSnapshot(a.db)).toEqual(shared);
          a.close();
        },
      ),
      { numRuns: 30 },
    );
  });

  it("names the callers who still intended an over-unmap's collateral in the same order whether or not the ledger was reopened before it (found by the run-log property below)", () => {
    // vfio is the domain's first caller; dma-api's 2M map is unmapped by vfio (dma-api still intends
    // it) and mapped again by vfio; kvm's 4K unmap inside the 2M page then takes the rest as
    // collateral that both still intend. A fresh ledger met vfio first, a reopened one loads the
    // callers sorted by name: the finding named them in those two orders.
    const cmds = [
      { op: 'domain', domain: 'd0', profile: 'intel-vtd' },
      { op: 'map', domain: 'd0', iova: '0x10000000', paddr: '0x90000000', size: '4K', caller: 'vfio' },
      { op: 'map', domain: 'd0', iova: '0x200000', paddr: '0x400000', size: '2M', caller: 'dma-api' },
      { op: 'unmap', domain: 'd0', iova: '0x200000', size: '2M', caller: 'vfio' },
      { op: 'map', domain: 'd0', iova: '0x200000', paddr: '0x400000', size: '2M', caller: 'vfio' },
      { op: 'unmap', domain: 'd0', iova: '0x201000', size: '4K', caller: 'kvm' },
    ];
    const findings = (reopen: boolean) => {
      const path = tempDb();
      let l = new Ledger(path);
      l.appendRaw(cmds.slice(0, -1));
      if (reopen) {
        l.close();
        l = new Ledger(path);
      }
      l.appendRaw(cmds.slice(-1));
      const rows = l.db.prepare('SELECT position, detail, step, step_others FROM unmap_findings ORDER BY position').all();
      const incremental = projectionSnapshot(l.db);
      l.rebuild();
      expect(projectionSnapshot(l.db)).toEqual(incremental);
      l.close();
      return rows as Array<{ detail: string }>;
    };
    const fresh = findings(false);
    expect(fresh).toEqual(findings(true));
    const owners = (JSON.parse(fresh.at(-1)!.detail) as { collateral: Array<{ owner: string[] }> }).collateral.map((c) => c.owner);
    expect(owners).toEqual([
      ['dma-api', 'vfio'],
      ['dma-api', 'vfio'],
    ]);
  });

  it('closes each piece of a cut intent in its own row (found by the property above: the pieces shared one row id)', () => {
    const cmds = [
      { op: 'domain', domain: 'd0', profile: 'arm-lpae-4k' },
      { op: 'map', domain: 'd0', iova: '0x40000000', paddr: '0x800000000', size: '0x10000', caller: 'vfio' },
      { op: 'unmap', domain: 'd0', iova: '0x40001000', size: '0x1000', caller: 'vfio' },
      { op: 'unmap', domain: 'd0', iova: '0x40000000', size: '0x200000', caller: 'vfio' },
      { op: 'map', domain: 'd0', iova: '0x40000000', paddr: '0x800000000', size: '0x10000', caller: 'vfio' },
    ];
    const l = new Ledger(tempDb());
    // One command per batch: the two pieces the first unmap leaves are written before the second ends them.
    for (const c of cmds) l.appendRaw([c]);
    const open = () => l.db.prepare('SELECT count(*) FROM intent WHERE valid_to IS NULL').pluck().get();
    expect(open()).toBe(0); // vfio asked to unmap all it had mapped
    const incremental = projectionSnapshot(l.db);
    l.rebuild();
    expect(projectionSnapshot(l.db)).toEqual(incremental);
    l.close();
  });

  it("an unmap of 0 bytes leaves its caller's intent as it was (iommu_unmap of 0 bytes unmaps nothing), incrementally and after rebuild", () => {
    const l = new Ledger(tempDb());
    l.appendRaw([
      { op: 'domain', domain: 'd0', profile: 'intel-vtd' },
      { op: 'map', domain: 'd0', iova: '0x200000', paddr: '0x400000', size: '0x200000', caller: 'vfio' },
    ]);
    const [out] = l.appendRaw([{ op: 'unmap', domain: 'd0', iova: '0x201000', size: '0x0', caller: 'vfio' }]);
    expect(out!.ok).toBe(true);
    expect(out!.unmapped).toBe(0n);
    const rows = () => l.db.prepare('SELECT id, iova, iova_last, valid_to FROM intent ORDER BY id').raw(true).all();
    expect(rows()).toHaveLength(1); // one interval, still open: not cut in two at 0x201000
    expect(l.intentNow('d0').map((i) => [i.iova, i.size])).toEqual([[0x200000n, 0x200000n]]);
    const incremental = projectionSnapshot(l.db);
    l.rebuild();
    expect(projectionSnapshot(l.db)).toEqual(incremental);
    l.close();
  });

  it('stateAt(p) equals replaying the commands up to p in the core', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PROFILE_NAMES).chain((p) => historyArb(p, 60)),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (cmds, frac) => {
          const path = tempDb();
          const l = new Ledger(path);
          l.appendRaw(cmds);
          l.close();
          const q = new Queries(path);
          const last = q.lastPosition;
          const p = Math.max(1, Math.round(frac * last));
          const got = q.stateAt('d0', p).pages.map((x) => [x.iova, x.paddr, x.pageSize, x.count, x.mappedBy]);
          const profile = (cmds[0] as { profile: string }).profile;
          const d = new Domain(resolveProfile(profile));
          cmds.slice(1, p).forEach((raw, i) => {
            const c = parseCommand(raw);
            if (c.op === 'map') d.map({ iova: c.iova, paddr: c.paddr, size: c.size, ref: i + 2 });
            if (c.op === 'unmap') d.unmap({ iova: c.iova, size: c.size });
          });
          const want = [...d.runs()].map((r) => [r.iova, r.paddr, r.pageSize, r.count, r.origin.ref]);
          // Same pages; runs may be cut differently in time (a row per rewrite), so compare per page byte ranges.
          const flat = (rows: unknown[][]) =>
            rows.flatMap((r) => {
              const [iova, paddr, ps, count, ref] = r as [bigint, bigint, bigint, bigint, number];
              return Array.from({ length: Number(count) }, (_, k) => `${iova + BigInt(k) * ps}:${paddr + BigInt(k) * ps}:${ps}:${ref}`);
            });
          expect(flat(got)).toEqual(flat(want));
          const hw = q.hardware('d0', p).stats;
          expect(hw).toEqual(d.stats());
          // walk() loads only the runs near the IOVA; it must walk exactly as the full state does,
          // for mapped IOVAs, holes next to them and far-away empty spans.
          const probes = [...d.runs()].slice(0, 4).flatMap((r) => [r.iova, r.iova - 0x1000n, r.iova + 0x20_0000n]);
          probes.push(0x4000_0000n, 0x7f00_0000_0000n, 0x4000_0000n + 512n * 0x20_0000n);
          // (A run's origin is rebuilt from the runs table: only its map event is compared.)
          const steps = (xs: ReturnType<Domain['walk']>) => xs.map((x) => ({ ...x, run: x.run && { ...x.run, origin: x.run.origin.ref } }));
          for (const iova of probes) {
            if (iova < 0n) continue;
            const w = q.walk('d0', iova, p);
            expect(steps(w.steps)).toEqual(steps(d.walk(iova)));
            // Beyond the domain's input space there is no walk, and the answer says why.
            expect(w.outside === true).toBe(iova >= 1n << BigInt(d.profile.iovaBits));
            if (w.outside) expect(w.steps).toEqual([]);
          }
          q.close();
        },
      ),
      { numRuns: 40 },
    );
  });

  it('stateAt from the run log (snapshots, pieces, merged small pieces) equals the runs table at every position, with the callers of the map events, and reopened ledgers load the live intent the intent table holds, whatever the batching', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PROFILE_NAMES).chain((p) => mirroredHistoryArb(p, 80)),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 40 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 8 }),
        (cmds, batch, snapshotEvery, destroy, reopenEvery) => {
          const path = tempDb();
          let l = new Ledger(path, { snapshotEvery });
          // A second domain interleaved, so pieces and snapshots of two domains share flushes.
          const all: unknown[] = [];
          cmds.forEach((c, i) => {
            all.push(c);
            if (i === 0) all.push({ ...(c as object), domain: 'd1' });
            else if (i % 3 === 0) all.push({ ...(c as object), domain: 'd1' });
          });
          if (destroy) all.push({ op: 'destroy', domain: 'd1' });
          // Now and then, the ledger is closed and opened again: the live state is loaded from the
          // run log and the intent snapshot, and must be what the intent table says is live.
          const liveIntent = (domain: number) =>
            (
              l.db
                .prepare('SELECT caller, iova, iova_last, map_pos, id FROM intent WHERE domain = ? AND valid_to IS NULL ORDER BY caller, iova')
                .safeIntegers(true)
                .all(domain) as Array<Record<string, bigint | string>>
            ).map((r) => ({
              caller: r.caller as string,
              iova: fromDb(r.iova as bigint),
              size: fromDb(r.iova_last as bigint) - fromDb(r.iova as bigint) + 1n,
              mapPos: Number(r.map_pos),
              row: Number(r.id),
            }));
          for (let i = 0, k = 0; i < all.length; i += batch, k++) {
            if (k % reopenEvery === reopenEvery - 1) {
              l.close();
              l = new Ledger(path, { snapshotEvery });
              for (const [name, id] of [
                ['d0', 1],
                ['d1', 2],
              ] as const) {
                if (l.domains().some((d) => d.name === name)) expect(l.intentNow(name)).toEqual(liveIntent(id));
              }
            }
            l.appendRaw(all.slice(i, i + batch));
          }
          const expectAll = () => {
            const exact = l.db.prepare(
              `SELECT id, iova, paddr, page_size, count, level, prot, map_pos, valid_from FROM runs
                WHERE domain = ? AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?) ORDER BY iova`,
            );
            const q = new Queries(path);
            for (const [name, id] of [
              ['d0', 1],
              ['d1', 2],
            ] as const) {
              for (let p = 1; p <= q.lastPosition; p++) {
                const want = (exact.safeIntegers(true).all(id, p, p) as Array<Record<string, bigint>>).map((r) => ({
                  row: Number(r.id),
                  iova: fromDb(r.iova!),
                  paddr: fromDb(r.paddr!),
                  pageSize: fromDb(r.page_size!),
                  count: r.count!,
                  level: Number(r.level),
                  prot: Number(r.prot),
                  mappedBy: Number(r.map_pos),
                  validFrom: Number(r.valid_from),
                }));
                const s = q.stateAt(name, p);
                expect(s.pages).toEqual(want);
                // The callers the blobs carry are those of the map events, every one known.
                expect(s.runs.caller.subarray(0, s.runs.n).every((k) => k > 0)).toBe(true);
                expect(q.callersOfRuns(s.runs)).toEqual(q.callersOf(s.runs.mapPos.subarray(0, s.runs.n)));
              }
            }
            q.close();
          };
          expectAll();
          // Snapshots were taken where the cadence says, and small pieces were merged.
          const snaps = l.db.prepare('SELECT count(*) FROM run_snapshots').pluck().get() as number;
          const versions = l.db.prepare('SELECT version FROM streams').pluck().all() as number[];
          expect(snaps).toBe(versions.reduce((a, v) => a + Math.floor(v / snapshotEvery), 0));
          const small = l.db
            .prepare(
              'SELECT count(*) FROM run_log r WHERE small = 1 AND first_pos > (SELECT coalesce(max(position), 0) FROM run_snapshots s WHERE s.domain = r.domain) GROUP BY domain',
            )
            .pluck()
            .all() as number[];
          for (const n of small) expect(n).toBeLessThan(32);
          // A rebuild flushes at other points: its pieces differ, the states do not; and the
          // ledgers reopened along the way had loaded the same live state as a fresh fold gives.
          const before = projectionSnapshot(l.db);
          expect(l.rebuild().mismatches).toBe(0);
          expect(projectionSnapshot(l.db)).toEqual(before);
          expectAll();
          l.close();
        },
      ),
      { numRuns: 30 },
    );
  });

  it("a fault's cause is the last event that removed its page, found the way a full scan would", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PROFILE_NAMES).chain((p) => faultyHistoryArb(p)),
        fc.integer({ min: 1, max: 9 }),
        (cmds, batch) => {
          const path = tempDb();
          const l = new Ledger(path);
          for (let i = 0; i < cmds.length; i += batch) l.appendRaw(cmds.slice(i, i + batch));
          const runs = l.db.prepare('SELECT iova, iova_last, valid_from, valid_to FROM runs').safeIntegers(true).all() as Array<Record<string, bigint | null>>;
          const faults = l.db.prepare('SELECT position, iova, cause, cause_position FROM faults').safeIntegers(true).all() as Array<
            Record<string, bigint | string | null>
          >;
          for (const f of faults) {
            const pos = f.position as bigint;
            const at = fromDb(f.iova as bigint);
            const holding = runs.filter((r) => fromDb(r.iova!) <= at && fromDb(r.iova_last!) >= at);
            const live = holding.some((r) => r.valid_from! <= pos && (r.valid_to === null || r.valid_to! > pos));
            const ends = holding.filter((r) => r.valid_to !== null && r.valid_to! < pos).map((r) => r.valid_to!);
            const last = ends.length ? ends.reduce((a, b) => (a > b ? a : b)) : null;
            if (live) expect(f.cause).toBe('mapped');
            else if (last === null) expect([f.cause, f.cause_position]).toEqual(['never-mapped', null]);
            else expect(f.cause_position).toBe(last);
          }
          l.close();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('answers blame, explain and history for the 2011 OMAP over-unmap', () => {
    const path = tempDb();
    const l = new Ledger(path);
    l.appendRaw([
      { op: 'domain', domain: 'dsp', profile: 'omap' },
      { op: 'map', domain: 'dsp', iova: '0x100000', paddr: '0x80100000', size: '1M', caller: 'camera', time: '2026-11-23T10:00:00Z' },
      { op: 'unmap', domain: 'dsp', iova: '0x101000', size: '4K', caller: 'isp', time: '2026-11-23T10:00:05Z' },
      { op: 'fault', domain: 'dsp', iova: '0x180000', device: 'isp' },
    ]);
    l.close();
    const q = new Queries(path);
    const b = q.blame(undefined, 0x180000n);
    expect(b.page).toBeUndefined();
    expect(b.cause?.position).toBe(3);
    expect(b.chain[0]?.page.mappedBy).toBe(2);
    const e = q.explain(undefined, 0x180000n);
    expect(explainText(e)).toContain('over-unmap');
    expect(explainText(e)).toContain('isp asked to unmap only 0x101000+4K');
    expect(explainText(e)).toContain('camera');
    const before = q.explain(undefined, 0x180000n, '2026-11-23T10:00:01Z');
    expect(explainText(before)).toContain('is mapped');
    expect(q.history(undefined, 0x180000n, 0x181000n).events.map((x) => x.position)).toEqual([2, 3, 4]);
    const over = q.findings({ kind: 'over-unmap' });
    expect(over).toHaveLength(1);
    expect(over[0]!.collateral.map((c) => [c.iova, c.size, c.owner])).toEqual([
      [0x100000n, 0x1000n, ['camera']],
      [0x102000n, 0xfe000n, ['camera']],
    ]);
    expect(q.faults()[0]!.cause).toBe('use-after-collateral-unmap');
    const d = q.diff(undefined, 2, 3);
    expect(d.removed).toHaveLength(1);
    expect(d.added).toHaveLength(0);
    expect(q.callers().find((c) => c.caller === 'isp')).toMatchObject({ unmaps: 1, cuts: 1, foreign: 1, readiness: 0 });
    q.close();
  });

  it("a caller's byte totals saturate at 2^64 - 1 instead of failing the append, in one batch or across batches, and rebuild agrees", () => {
    const domain = { op: 'domain', domain: 'w', pgsizes: ['4K', '2M', '1G'], semantics: 'legacy', iovaBits: 64 };
    const half = { op: 'unmap', domain: 'w', iova: '0x0', size: '0x8000000000000000', caller: 'c' };
    const top = { op: 'map', domain: 'w', iova: '0xffffffffc0000000', paddr: '0x40000000', size: '1G', caller: 'm' };
    const cut = { op: 'unmap', domain: 'w', iova: '0xffffffffc0001000', size: '4K', caller: 'c' };
    for (const batches of [[[domain, half, half]], [[domain, half], [half], [top, cut]]]) {
      const path = tempDb();
      const l = new Ledger(path);
      for (const b of batches) l.appendRaw(b);
      const q = new Queries(path);
      const c = q.callers({ caller: 'c' })[0]!;
      expect(c.unmaps).toBe(batches.flat().filter((x) => x.op === 'unmap').length);
      expect(c.unmapBytes).toBe((1n << 64n) - 1n);
      q.close();
      const before = projectionSnapshot(l.db);
      expect(l.rebuild().mismatches).toBe(0);
      expect(projectionSnapshot(l.db)).toEqual(before);
      l.close();
    }
    // The same for a domain's IOTLB invalidation total: three unmaps of 2^63 bytes.
    const path = tempDb();
    const l = new Ledger(path);
    const big = { op: 'map', domain: 'w', iova: '0x0', paddr: '0x0', size: '0x8000000000000000' };
    const all = { op: 'unmap', domain: 'w', iova: '0x0', size: '0x8000000000000000' };
    l.appendRaw([domain, big, all, big]);
    l.appendRaw([all, big, all]);
    const stored = l.db.prepare("SELECT invalidations, invalidated_bytes FROM streams WHERE name = 'w'").safeIntegers(true).get() as Record<string, bigint>;
    expect(stored.invalidations).toBe(3n);
    expect(fromDb(stored.invalidated_bytes!)).toBe((1n << 64n) - 1n);
    l.close();
  });

  it('a Queries kept open sees what other connections append and destroy (no stale domain info), and refuses a position that is not a whole number in range', () => {
    const path = tempDb();
    const l = new Ledger(path);
    l.appendRaw([
      { op: 'domain', domain: 'd', profile: 'intel-vtd' },
      { op: 'map', domain: 'd', iova: '0x200000', paddr: '0x80000000', size: '2M', caller: 'a' },
    ]);
    const q = new Queries(path);
    expect(q.blame('d', 0x70000000n).page).toBeUndefined();
    l.appendRaw([{ op: 'map', domain: 'd', iova: '0x40000000', paddr: '0xc0000000', size: '1G', caller: 'b' }]);
    // max_span grew from 2M to 1G: look-ups by IOVA must start far enough below.
    expect(q.blame('d', 0x70000000n).page?.mappedBy).toBe(3);
    expect(q.history('d', 0x70000000n, 0x70000001n).events.map((e) => e.position)).toEqual([3]);
    expect(explainText(q.explain('d', 0x70000000n))).toMatch(/is mapped as of event #3/);
    l.appendRaw([{ op: 'destroy', domain: 'd' }]);
    expect(q.domain('d').destroyed).toBe(true);
    for (const bad of [1.5, -3, Number.NaN]) expect(() => q.stateAt('d', bad)).toThrow(/a position is a whole number, 0 or more/);
    expect(() => q.stateAt('d', 99)).toThrow(/the ledger ends at position 4/);
    expect(q.stateAt('d', 0).runs.n).toBe(0);
    for (const bad of [-1, 0.5]) expect(() => q.callers({ examples: bad })).toThrow(/give a whole number, 0 or more/);
    q.close();
    l.close();
  });

  it('callersOf names the caller of each event as event() does, whatever the name holds, (unknown) when none', () => {
    const path = tempDb();
    const l = new Ledger(path);
    const cmds: unknown[] = [{ op: 'domain', domain: 'd', profile: 'intel-vtd' }];
    for (let i = 0; i < 5000; i++) {
      const iova = `0x${(0x100000 + i * 0x1000).toString(16)}`;
      // Names with a quote, a backslash, non-ASCII; some commands name a task but no caller.
      const caller = [`c${i % 5}`, 'say "hi"', 'back\\slash', 'gpü😀', ''][i % 5]!;
      cmds.push({ op: 'map', domain: 'd', iova, paddr: iova, size: '4K', ...(i % 7 === 3 ? (i % 2 ? {} : { task: 'kworker/0:1' }) : { caller }) });
    }
    l.appendRaw(cmds);
    l.close();
    const q = new Queries(path);
    const positions = [5001, 2, 4099, 4098, 2, 4100, 10, 1];
    const got = q.callersOf(positions);
    expect([...got.keys()].sort((a, b) => a - b)).toEqual([1, 2, 10, 4098, 4099, 4100, 5001]);
    for (const p of got.keys()) expect(got.get(p)).toBe(q.event(p).who.caller ?? '(unknown)');
    expect(got.get(2)).toBe('c0');
    expect(got.get(5)).toBeUndefined();
    const every = q.callersOf(Array.from({ length: 5001 }, (_, i) => i + 1));
    expect(every.size).toBe(5001);
    for (let p = 1; p <= 5001; p += 7) expect(every.get(p)).toBe(q.event(p).who.caller ?? '(unknown)');
    expect([3, 4, 5, 6, 10, 12].map((p) => every.get(p))).toEqual(['say "hi"', 'back\\slash', '(unknown)', '', 'gpü😀', '(unknown)']);
    expect(q.event(12).who).toEqual({ task: 'kworker/0:1' });
    expect([...every.values()].filter((c) => c === '(unknown)').length).toBe(1 + Array.from({ length: 5000 }, (_, i) => i).filter((i) => i % 7 === 3).length);
    q.close();
  });
});

/**
 * Histories whose faults land where maps were (or are): maps of 4K..4M in a few 8 MiB slots,
 * unmaps inside them (over-unmaps on large pages), and faults at pages of those slots.
 */
function faultyHistoryArb(profile: string) {
  const slot = fc.integer({ min: 0, max: 1 });
  const op = fc.oneof(
    fc.record({ k: fc.constant('map' as const), slot, pages: fc.constantFrom(1, 16, 512, 1024), at: fc.constantFrom(0, 512) }),
    fc.record({ k: fc.constant('unmap' as const), slot, pages: fc.constantFrom(1, 512, 1024), at: fc.integer({ min: 0, max: 1100 }) }),
    fc.record({ k: fc.constant('fault' as const), slot, pages: fc.constant(1), at: fc.integer({ min: 0, max: 1100 }) }),
  );
  const hx = (n: number) => `0x${n.toString(16)}`;
  return fc.array(op, { minLength: 20, maxLength: 60, size: 'max' }).map((ops) => [
    { op: 'domain', domain: 'd0', profile },
    ...ops.map((o) => {
      const iova = 0x4000_0000 + o.slot * 0x80_0000 + o.at * 0x1000;
      if (o.k === 'map') return { op: 'map', domain: 'd0', iova: hx(iova), paddr: hx(0x8_0000_0000 + iova), size: hx(o.pages * 0x1000) };
      if (o.k === 'unmap') return { op: 'unmap', domain: 'd0', iova: hx(iova), size: hx(o.pages * 0x1000) };
      return { op: 'fault', domain: 'd0', iova: hx(iova + 0x10), device: '0000:00:02.0' };
    }),
  ]);
}
