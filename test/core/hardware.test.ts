/**
 * The hardware model: page-table walks, entries and tables per level, and the deltas map and
 * unmap report. A level-L table exists for each distinct span (the entry size of level L-1) that
 * holds a leaf at level >= L; the root always exists. Counts below are worked out by hand.
 */
import { describe, expect, it } from 'vitest';
import { Domain, type MapResult } from '../../src/core/domain.js';
import { resolveProfile } from '../../src/core/profile.js';
import { customProfile } from '../../src/core/profile-spec.js';

const K = 1n << 10n;
const M = 1n << 20n;
const G = 1n << 30n;

/** A map that must succeed, narrowed to its success shape. */
function ok(r: MapResult): Extract<MapResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected success: ${r.errno} ${r.reason}`);
  return r;
}

const tables = (d: Domain) => d.stats().levels.map((l) => l.tables);
const entries = (d: Domain) => d.stats().levels.map((l) => l.entries);
const kinds = (d: Domain, iova: bigint) => d.walk(iova).map((s) => `${s.levelName}:${s.kind}:${s.index}`);

describe('walk', () => {
  it('Intel VT-d 4-level: PML4 -> PDPT -> PD -> PT for a 4K page, with the 9-bit indices of the IOVA', () => {
    const d = new Domain(resolveProfile('intel-vtd'));
    ok(d.map({ iova: 0x7fff_ffff_f000n, paddr: 0xabc000n, size: 4n * K, ref: 1 }));
    // 0x7fff_ffff_f000: bits 47..39 = 255, 38..30 = 511, 29..21 = 511, 20..12 = 511.
    expect(kinds(d, 0x7fff_ffff_f123n)).toEqual(['PML4:table:255', 'PDPT:table:511', 'PD:table:511', 'PT:page:511']);
    const last = d.walk(0x7fff_ffff_f123n).at(-1)!;
    expect([last.output, last.pageSize, last.repeat, last.repeatIndex]).toEqual([0xabc123n, 4n * K, 1, 0]);
    expect(last.run?.origin.ref).toBe(1);
  });

  it('stops at the PD for a 2M page and at the PDPT for a 1G page', () => {
    const d = new Domain(resolveProfile('intel-vtd'));
    ok(d.map({ iova: G + 2n * M, paddr: 6n * M, size: 2n * M, ref: 1 }));
    ok(d.map({ iova: 3n * G, paddr: 7n * G, size: G, ref: 2 }));
    expect(kinds(d, G + 2n * M + 0x34567n)).toEqual(['PML4:table:0', 'PDPT:table:1', 'PD:page:1']);
    expect(d.walk(G + 2n * M + 0x34567n).at(-1)!.output).toBe(6n * M + 0x34567n);
    expect(kinds(d, 3n * G + 5n)).toEqual(['PML4:table:0', 'PDPT:page:3']);
    expect(d.walk(3n * G + 5n).at(-1)!.output).toBe(7n * G + 5n);
  });

  it('an unmapped IOVA ends with an invalid entry at the first level without a table for it', () => {
    const d = new Domain(resolveProfile('intel-vtd'));
    ok(d.map({ iova: 0x1000n, paddr: 0x1000n, size: 4n * K, ref: 1 }));
    expect(kinds(d, 0x2000n)).toEqual(['PML4:table:0', 'PDPT:table:0', 'PD:table:0', 'PT:invalid:2']); // same PT
    expect(kinds(d, 0x200000n)).toEqual(['PML4:table:0', 'PDPT:table:0', 'PD:invalid:1']); // no PT for 2M..4M
    expect(kinds(d, G)).toEqual(['PML4:table:0', 'PDPT:invalid:1']);
    expect(kinds(d, 1n << 39n)).toEqual(['PML4:invalid:1']);
    expect(kinds(new Domain(resolveProfile('intel-vtd')), 0n)).toEqual(['PML4:invalid:0']);
  });

  it('OMAP: a 64K large page is one L2 descriptor repeated 16 times; the walk names which copy', () => {
    const d = new Domain(resolveProfile('omap'));
    ok(d.map({ iova: 0x10000n, paddr: 0x8001_0000n, size: 64n * K, ref: 1 }));
    const w = d.walk(0x1b234n);
    expect(w.map((s) => `${s.levelName}:${s.kind}:${s.index}`)).toEqual(['L1:table:0', 'L2:page:27']);
    expect([w[1]!.output, w[1]!.pageSize, w[1]!.repeat, w[1]!.repeatIndex]).toEqual([0x8001_b234n, 64n * K, 16, 11]);
  });

  it('OMAP and v7s: a 16M supersection is 16 repeated first-level entries, a 1M section one', () => {
    for (const name of ['omap', 'arm-v7s']) {
      const d = new Domain(resolveProfile(name));
      ok(d.map({ iova: 0x300_0000n, paddr: 0x900_0000n, size: 16n * M, ref: 1 }));
      ok(d.map({ iova: 0x100000n, paddr: 0x500000n, size: M, ref: 2 }));
      const s = d.walk(0x3a1_2345n);
      expect(s.map((x) => `${x.levelName}:${x.kind}:${x.index}`)).toEqual(['L1:page:58']); // 0x3a
      expect([s[0]!.output, s[0]!.repeat, s[0]!.repeatIndex]).toEqual([0x9a1_2345n, 16, 10]);
      const t = d.walk(0x1abcden);
      expect([t.length, t[0]!.kind, t[0]!.output, t[0]!.repeat, t[0]!.repeatIndex]).toEqual([1, 'page', 0x5abcden, 1, 0]);
      expect(entries(d)).toEqual([16 + 1, 0]);
      expect(tables(d)).toEqual([1, 0]);
    }
  });

  it('AMD v1: sizes between levels are runs of replicated PTEs (8K -> 2, 64K -> 16, 4M -> 2, 32M -> 16)', () => {
    const d = new Domain(resolveProfile('amd-v1'));
    const cases: Array<[bigint, number, number]> = [
      // size, leaf level (0 = root of 5), replicas (PAGE_SIZE_PTE_COUNT)
      [8n * K, 4, 2],
      [64n * K, 4, 16],
      [2n * M, 3, 1],
      [4n * M, 3, 2],
      [32n * M, 3, 16],
      [G, 2, 1],
    ];
    let iova = 0n;
    for (const [size, level, repeat] of cases) {
      const r = ok(d.map({ iova, paddr: iova, size, ref: 1 }));
      expect(r.runs.map((x) => [x.pageSize, x.level, x.repeat])).toEqual([[size, level, repeat]]);
      expect(d.walk(iova + size - 1n).at(-1)!.repeatIndex).toBe(repeat - 1);
      iova += G;
    }
  });
});

describe('table and entry counts', () => {
  it('1 GiB on a 4K-only profile: one run, 262,144 leaf entries in 512 last-level tables', () => {
    const d = new Domain(customProfile({ name: '4k-only', pgsizes: ['4K'], iovaBits: 48 }));
    expect(d.profile.format.levels.map((l) => l.shift)).toEqual([39, 30, 21, 12]);
    const r = ok(d.map({ iova: G, paddr: 0x2_0000_0000n, size: G, ref: 1 }));
    expect(r.runs.map((x) => [x.pageSize, x.count])).toEqual([[4n * K, 262_144n]]);
    expect(d.runCount).toBe(1);
    expect(entries(d)).toEqual([0, 0, 0, 262_144]);
    expect(tables(d)).toEqual([1, 1, 1, 512]); // 1G / 2M spans = 512 tables of 512 entries
    expect(d.stats().tableMemoryBytes).toBe(515 * 4096);
    // The map wrote one descriptor in the root, one in L1, 512 in L2, and the 262,144 leaves.
    expect(r.hw.tablesAllocated).toEqual([0, 1, 1, 512]);
    expect(r.hw.entriesWritten).toEqual([1, 1, 512, 262_144]);
    const u = d.unmap({ iova: G, size: G });
    expect(u.unmappedSize).toBe(G);
    expect(u.hw.tablesFreed).toEqual([0, 1, 1, 512]);
    expect(u.hw.entriesCleared).toEqual([1, 1, 512, 262_144]);
    expect(u.hw.invalidations).toEqual([{ start: G, end: 2n * G }]);
    expect(tables(d)).toEqual([1, 0, 0, 0]);
  });

  it('map cost is per run, not per page: 128 TiB of 4K pages is one run, and a 4K hole makes two', () => {
    const d = new Domain(customProfile({ pgsizes: ['4K'], iovaBits: 48 }));
    const size = 1n << 47n;
    ok(d.map({ iova: 0n, paddr: 0n, size, ref: 1 }));
    expect(d.runCount).toBe(1);
    expect(entries(d)[3]).toBe(2 ** 35);
    expect(tables(d)).toEqual([1, 256, 256 * 512, 256 * 512 * 512]);
    const u = d.unmap({ iova: 1n << 46n, size: 4n * K });
    expect([u.unmappedSize, d.runCount]).toEqual([4n * K, 2]);
    expect(entries(d)[3]).toBe(2 ** 35 - 1);
    expect(tables(d)).toEqual([1, 256, 256 * 512, 256 * 512 * 512]); // the table keeps 511 entries
  });

  it('Intel VT-d: tables appear once per 512G / 1G / 2M span used, large pages need none below them', () => {
    const d = new Domain(resolveProfile('intel-vtd'));
    ok(d.map({ iova: 0n, paddr: 0n, size: 4n * K, ref: 1 }));
    expect(tables(d)).toEqual([1, 1, 1, 1]);
    ok(d.map({ iova: 2n * M, paddr: 2n * M, size: 2n * M, ref: 2 })); // a PD entry, same PD
    expect(tables(d)).toEqual([1, 1, 1, 1]);
    ok(d.map({ iova: G, paddr: G, size: G, ref: 3 })); // a PDPT entry, same PDPT
    expect(tables(d)).toEqual([1, 1, 1, 1]);
    expect(entries(d)).toEqual([0, 1, 1, 1]);
    const far = ok(d.map({ iova: 1n << 39n, paddr: 0n, size: 4n * K, ref: 4 })); // PML4 entry 1
    expect(far.hw.tablesAllocated).toEqual([0, 1, 1, 1]);
    expect(far.hw.entriesWritten).toEqual([1, 1, 1, 1]);
    expect(tables(d)).toEqual([1, 2, 2, 2]);
    expect(d.stats().tableMemoryBytes).toBe(7 * 4096);
  });

  it('Intel VT-d 5-level: a first 4K map builds a table at each of the four levels below the root', () => {
    const d = new Domain(resolveProfile('intel-vtd-5level'));
    expect(d.profile.format.levels.map((l) => l.name)).toEqual(['PML5', 'PML4', 'PDPT', 'PD', 'PT']);
    ok(d.map({ iova: 1n << 56n, paddr: 0n, size: 4n * K, ref: 1 }));
    expect(tables(d)).toEqual([1, 1, 1, 1, 1]);
    expect(d.walk(1n << 56n)[0]!.index).toBe(256);
  });

  it('OMAP: second-level tables (1 KiB) come and go with the last 4K/64K page in their 1M', () => {
    const d = new Domain(resolveProfile('omap'));
    ok(d.map({ iova: 0n, paddr: 0n, size: 8n * K, ref: 1 }));
    ok(d.map({ iova: M, paddr: M, size: 4n * K, ref: 2 }));
    ok(d.map({ iova: 2n * M, paddr: 2n * M, size: M, ref: 3 }));
    expect(tables(d)).toEqual([1, 2]);
    expect(entries(d)).toEqual([1, 3]);
    expect(d.stats().tableMemoryBytes).toBe(16 * 1024 + 2 * 1024);
    const a = d.unmap({ iova: 0n, size: 4n * K });
    expect([a.hw.tablesFreed, a.hw.entriesCleared]).toEqual([
      [0, 0],
      [0, 1],
    ]);
    const b = d.unmap({ iova: 4n * K, size: 4n * K });
    expect([b.hw.tablesFreed, b.hw.entriesCleared]).toEqual([
      [0, 1],
      [1, 1],
    ]);
    expect(tables(d)).toEqual([1, 1]);
  });

  it('a rejected command reports no hardware change at all', () => {
    const d = new Domain(resolveProfile('vfio-type1v2'));
    ok(d.map({ iova: 0n, paddr: 0n, size: 4n * M, ref: 1 }));
    const u = d.unmap({ iova: 0n, size: 2n * M });
    expect(u.errno).toBe('EINVAL');
    expect(u.hw).toEqual({
      entriesWritten: [0, 0, 0, 0],
      entriesCleared: [0, 0, 0, 0],
      tablesAllocated: [0, 0, 0, 0],
      tablesFreed: [0, 0, 0, 0],
      invalidations: [],
    });
  });

  it('invalidations are coalesced across the runs an unmap removes', () => {
    const d = new Domain(resolveProfile('intel-vtd'));
    ok(d.map({ iova: 0x1ff000n, paddr: 0x1ff000n, size: 0x401000n, ref: 1 }));
    ok(d.map({ iova: 0x600000n, paddr: 0n, size: 4n * K, ref: 2 }));
    ok(d.map({ iova: 0x800000n, paddr: 0n, size: 4n * K, ref: 3 }));
    const u = d.unmap({ iova: 0x1ff000n, size: 0x602000n });
    expect(u.unmappedSize).toBe(0x402000n); // stops at the hole at 0x601000
    expect(u.hw.invalidations).toEqual([{ start: 0x1ff000n, end: 0x601000n }]);
  });
});
