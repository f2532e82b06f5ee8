/**
 * Stepped and harmful over-unmaps (src/core/stepping.ts) as the ledger stores them: written-out
 * cases, the repro extracts, a pending verdict across a reopen, and two properties: callers that
 * step by the returned size are never harmful; a caller that takes another's pages always is,
 * and names it.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Ledger } from '../../src/projections/ledger.js';
import { Queries } from '../../src/projections/queries.js';
import { tempDb } from './helpers.js';

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/** Over-unmaps as [position, verdict, reason, settled at, others]. */
function verdicts(path: string): Array<[number, string, string, number | undefined, string[] | undefined]> {
  const q = new Queries(path, { readonly: true });
  try {
    return q.findings({ kind: 'over-unmap' }).map((f) => [f.position, f.step!.verdict, f.step!.reason, f.step!.at, f.step!.others]);
  } finally {
    q.close();
  }
}

function intentOf(path: string, caller: string): Array<[string, string]> {
  const q = new Queries(path, { readonly: true });
  try {
    return (
      q.db.prepare('SELECT iova, iova_last FROM intent WHERE caller = ? AND valid_to IS NULL ORDER BY iova').safeIntegers(true).all(caller) as Array<{
        iova: bigint;
        iova_last: bigint;
      }>
    ).map((r) => [hex(r.iova + (1n << 63n)), hex(r.iova_last + (1n << 63n) + 1n)]);
  } finally {
    q.close();
  }
}

function ledgerOf(cmds: unknown[]): string {
  const path = tempDb();
  const l = new Ledger(path);
  l.appendRaw(cmds);
  l.close();
  return path;
}

/** /work/shared/repro's extracts of issue 13, as they are (the repository must not depend on that folder). */
const REPRO: Record<string, unknown[]> = {
  // amd-v1: a 64K map at an 8K-aligned paddr is 8 pages of 8K; b's 4K unmap removes one.
  'e.jsonl': [
    { op: 'domain', domain: 'd', profile: 'amd-v1' },
    { op: 'map', domain: 'd', iova: '0x0', paddr: '0x102000', size: '64K', caller: 'a' },
    { op: 'unmap', domain: 'd', iova: '0x2000', size: '4K', caller: 'b' },
  ],
  // intel-vtd: map 2M, unmap 4K, map 2M again, unmap 4K.
  'm.jsonl': [
    { op: 'domain', domain: 'd', profile: 'intel-vtd' },
    { op: 'map', domain: 'd', iova: '0x200000', paddr: '0x40000000', size: '2M', caller: 'vfio' },
    { op: 'unmap', domain: 'd', iova: '0x200000', size: '4K', caller: 'vfio' },
    { op: 'map', domain: 'd', iova: '0x200000', paddr: '0x40000000', size: '2M', caller: 'vfio' },
    { op: 'unmap', domain: 'd', iova: '0x200000', size: '4K', caller: 'vfio' },
  ],
};
const jsonl = (name: string) => REPRO[name]!;

const D = (profile = 'amd-v1') => ({ op: 'domain', domain: 'd', profile });
const map = (iova: number, size: number, caller: string) => ({
  op: 'map',
  domain: 'd',
  iova: hex(iova),
  paddr: hex(0x4000_0000 + iova),
  size: hex(size),
  caller,
});
const unmap = (iova: number, size: number, caller: string) => ({ op: 'unmap', domain: 'd', iova: hex(iova), size: hex(size), caller });
const K = 0x1000;
const M = 0x10_0000;

describe('stepped and harmful over-unmaps', () => {
  it("e.jsonl: b's 4K unmap took an 8K page a had mapped: harmful, other owner a", () => {
    const p = ledgerOf(jsonl('e.jsonl'));
    expect(verdicts(p)).toEqual([[3, 'harmful', 'other-owner', 3, ['a']]]);
  });

  it("m.jsonl: each 4K unmap removed the caller's whole 2M map, to its end: stepped (ended); nothing stays in the caller's intent", () => {
    const p = ledgerOf(jsonl('m.jsonl'));
    expect(verdicts(p)).toEqual([
      [3, 'stepped', 'ended', 3, undefined],
      [5, 'stepped', 'ended', 5, undefined],
    ]);
    expect(intentOf(p, 'vfio')).toEqual([]);
  });

  it("VFIO's teardown (vfio_unmap_unpin steps by the returned size): advanced, then ended at the map's end", () => {
    // A 3M map on amd-v1 at 0x100000: one 1M page (0x100000 is 1M-aligned) and one 2M page? No:
    // the page split follows IOVA and paddr alignment: 0x100000+1M, then 0x200000+2M.
    const p = ledgerOf([D(), map(0x10_0000, 3 * M, 'vfio'), unmap(0x10_0000, K, 'vfio'), unmap(0x20_0000, K, 'vfio')]);
    expect(verdicts(p)).toEqual([
      [3, 'stepped', 'advanced', 4, undefined],
      [4, 'stepped', 'ended', 4, undefined],
    ]);
    expect(intentOf(p, 'vfio')).toEqual([]);
  });

  it('a caller that unmaps 4K at a time without reading the result covers the collateral: stepped (covered)', () => {
    const p = ledgerOf([
      D('intel-vtd'),
      map(0x20_0000, 4 * M, 'legacy'),
      unmap(0x20_0000, K, 'legacy'),
      ...Array.from({ length: 511 }, (_, i) => unmap(0x20_0000 + (i + 1) * K, K, 'legacy')),
    ]);
    expect(verdicts(p)).toEqual([[3, 'stepped', 'covered', 514, undefined]]);
    // The 2M page at 0x400000 was not touched: still intended.
    expect(intentOf(p, 'legacy')).toEqual([['0x400000', '0x600000']]);
  });

  it('a fault on the collateral makes it harmful, pending or already stepped', () => {
    const fault = (iova: number) => ({ op: 'fault', domain: 'd', iova: hex(iova), device: '0000:00:03.0' });
    // Pending (the next unmap has not come): the fault settles it.
    const a = ledgerOf([D('intel-vtd'), map(0x20_0000, 4 * M, 'x'), unmap(0x20_0000, K, 'x'), fault(0x30_0000)]);
    expect(verdicts(a)).toEqual([[3, 'harmful', 'fault', 4, undefined]]);
    // Stepped at once (ended), then a fault on its collateral.
    const b = ledgerOf([D('intel-vtd'), map(0x20_0000, 2 * M, 'x'), unmap(0x20_0000, K, 'x'), fault(0x30_0000)]);
    expect(verdicts(b)).toEqual([[3, 'harmful', 'fault', 4, undefined]]);
  });

  it("the caller's next unmap elsewhere: harmful (not-stepped), and the collateral stays in its intent", () => {
    const p = ledgerOf([D('intel-vtd'), map(0x20_0000, 4 * M, 'x'), map(0x100_0000, K, 'x'), unmap(0x20_0000, K, 'x'), unmap(0x100_0000, K, 'x')]);
    expect(verdicts(p)).toEqual([[4, 'harmful', 'not-stepped', 5, undefined]]);
    expect(intentOf(p, 'x')).toEqual([['0x201000', '0x600000']]);
  });

  it('another caller maps into the collateral first: harmful (reused); the caller maps it again itself: stepped (remapped)', () => {
    const reused = ledgerOf([D('intel-vtd'), map(0x20_0000, 4 * M, 'x'), unmap(0x20_0000, K, 'x'), map(0x30_0000, K, 'y')]);
    expect(verdicts(reused)).toEqual([[3, 'harmful', 'reused', 4, ['y']]]);
    const remapped = ledgerOf([D('intel-vtd'), map(0x20_0000, 4 * M, 'x'), unmap(0x20_0000, K, 'x'), map(0x30_0000, K, 'x')]);
    expect(verdicts(remapped)).toEqual([[3, 'stepped', 'remapped', 4, undefined]]);
  });

  it('an undecided over-unmap is pending, stored so, and settled by the next unmap after the ledger is reopened', () => {
    const path = tempDb();
    let l = new Ledger(path);
    l.appendRaw([D(), map(0x10_0000, 3 * M, 'vfio'), unmap(0x10_0000, K, 'vfio')]);
    l.close();
    expect(verdicts(path)).toEqual([[3, 'pending', 'pending', undefined, undefined]]);
    l = new Ledger(path);
    l.appendRaw([unmap(0x20_0000, K, 'vfio')]);
    l.close();
    expect(verdicts(path)).toEqual([
      [3, 'stepped', 'advanced', 4, undefined],
      [4, 'stepped', 'ended', 4, undefined],
    ]);
    const q = new Queries(path, { readonly: true });
    expect(q.findings({ kind: 'over-unmap', stepped: false })).toEqual([]);
    q.close();
  });

  it('property: callers that step by the returned size (VFIO teardown) are never harmful, and intend nothing at the end', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('amd-v1', 'intel-vtd'),
        // Regions: [start in 2M units, length in 4K pages]; each region is mapped in one to three maps.
        fc.uniqueArray(fc.record({ slot: fc.integer({ min: 0, max: 63 }), pages: fc.integer({ min: 1, max: 1100 }), cuts: fc.integer({ min: 1, max: 3 }) }), {
          minLength: 1,
          maxLength: 6,
          selector: (r) => r.slot,
        }),
        fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 12 }),
        (profile, regions, order) => {
          const path = tempDb();
          const l = new Ledger(path);
          l.appendRaw([D(profile)]);
          const region = (r: { slot: number; pages: number }) => ({ start: r.slot * 8 * M, end: r.slot * 8 * M + r.pages * K });
          for (const r of regions) {
            const { start, end } = region(r);
            const step = Math.max(1, Math.ceil(r.pages / r.cuts)) * K;
            for (let a = start; a < end; a += step) l.appendRaw([map(a, Math.min(step, end - a), 'vfio')]);
            // Another caller's symmetric traffic, elsewhere.
            l.appendRaw([map(0x4000_0000 + r.slot * 16 * K, 8 * K, 'nvme'), unmap(0x4000_0000 + r.slot * 16 * K, 8 * K, 'nvme')]);
          }
          // Tear the regions down in some order, as vfio_unmap_unpin does: ask for 4K, step by what came back.
          const left = regions.map((_, i) => i);
          const teardown: number[] = [];
          for (const o of order) if (left.length) teardown.push(...left.splice(o % left.length, 1));
          teardown.push(...left);
          for (const i of teardown) {
            const { start, end } = region(regions[i]!);
            for (let a = start; a < end;) {
              const [out] = l.appendRaw([unmap(a, K, 'vfio')]);
              a += Number(out!.unmapped ?? 0n) || K;
            }
          }
          l.close();
          const v = verdicts(path);
          expect(v.filter(([, verdict]) => verdict !== 'stepped')).toEqual([]);
          expect(intentOf(path, 'vfio')).toEqual([]);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("property: an unmap that takes another caller's live pages is harmful and names that caller", () => {
    fc.assert(
      fc.property(
        fc.constantFrom('amd-v1', 'intel-vtd'),
        fc.array(
          fc.record({
            slot: fc.integer({ min: 0, max: 15 }),
            offsetPages: fc.integer({ min: 0, max: 511 }),
            owner: fc.constantFrom('a', 'b', 'c'),
            taker: fc.constantFrom('a', 'b', 'c'),
          }),
          { minLength: 1, maxLength: 10 },
        ),
        (profile, cases) => {
          const path = tempDb();
          const l = new Ledger(path);
          l.appendRaw([D(profile)]);
          const expected = new Map<number, string>();
          for (const c of cases) {
            // A 2M map (one 2M page under both profiles), then a 4K unmap inside it by `taker`.
            const base = c.slot * 2 * M;
            const [m] = l.appendRaw([map(base, 2 * M, c.owner)]);
            if (!m!.ok) continue;
            const [u] = l.appendRaw([unmap(base + c.offsetPages * K, K, c.taker)]);
            if (c.taker !== c.owner && (u!.collateral?.length ?? 0) > 0) expected.set(u!.position!, c.owner);
          }
          l.close();
          const v = new Map(verdicts(path).map(([pos, verdict, reason, , others]) => [pos, { verdict, reason, others }]));
          for (const [pos, owner] of expected) {
            expect(v.get(pos)).toMatchObject({ verdict: 'harmful', reason: 'other-owner' });
            expect(v.get(pos)!.others).toContain(owner);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
