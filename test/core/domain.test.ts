/**
 * Worked examples of map and of the three unmap behaviours, each derived from the kernel code
 * named in docs/kernel-facts.md and ../shared/reference/kernel-semantics.md.
 */
import { describe, expect, it } from 'vitest';
import { Domain, runEnd, type Run, type UnmapResult } from '../../src/core/domain.js';
import {
  BUILTIN_PROFILES,
  describeProfile,
  findBuiltinProfile,
  ProfileError,
  profileFromDescriptor,
  resolveProfile,
  type Semantics,
} from '../../src/core/profile.js';
import { customProfile } from '../../src/core/profile-spec.js';

const K = 1n << 10n;
const M = 1n << 20n;
const G = 1n << 30n;

function domain(name: string, semantics?: Semantics): Domain {
  return new Domain(resolveProfile(name, semantics));
}

function map(d: Domain, iova: bigint, paddr: bigint, size: bigint, ref: number): Run[] {
  const r = d.map({ iova, paddr, size, ref });
  if (!r.ok) throw new Error(`setup map failed: ${r.errno} ${r.reason}`);
  return r.runs;
}

/** Live pages as [iova, pageSize, count, paddr, ref]: easy to read in a failure. */
function live(d: Domain): Array<[bigint, bigint, bigint, bigint, number]> {
  return [...d.runs()].map((r) => [r.iova, r.pageSize, r.count, r.paddr, r.origin.ref]);
}

const rng = (start: bigint, end: bigint) => ({ start, end });
const pieces = (xs: ReadonlyArray<{ start: bigint; end: bigint; origin?: { ref: number } }>) => xs.map((x) => [x.start, x.end, x.origin?.ref] as const);
const removedOf = (u: UnmapResult) => u.removed.map((r) => [r.iova, r.pageSize, r.count, r.origin.ref] as const);

describe('map (iommu_map)', () => {
  it('splits greedily and puts each page at its leaf level (4K in PT, 2M in PD)', () => {
    const d = domain('intel-vtd');
    const runs = map(d, 0x1ff000n, 0x1ff000n, 0x401000n, 1);
    expect(runs.map((r) => [r.iova, r.pageSize, r.count, r.level, d.profile.format.levels[r.level]!.name])).toEqual([
      [0x1ff000n, 4n * K, 1n, 3, 'PT'],
      [0x200000n, 2n * M, 2n, 2, 'PD'],
    ]);
    expect(d.mappedBytes).toBe(0x401000n);
    expect(runs[0]!.origin).toEqual({ ref: 1, iova: 0x1ff000n, paddr: 0x1ff000n, size: 0x401000n, prot: 3 });
  });

  it('EINVAL for size 0 and for iova, paddr or size not aligned to the smallest page', () => {
    const d = domain('intel-vtd');
    const cases: Array<[bigint, bigint, bigint, RegExp]> = [
      [0x1000n, 0x1000n, 0n, /size is 0/],
      [0x1800n, 0x1000n, 0x1000n, /iova 0x1800 is not aligned to the smallest page size 4K/],
      [0x1000n, 0x1800n, 0x1000n, /paddr 0x1800 is not aligned/],
      [0x1000n, 0x1000n, 0x1800n, /size 0x1800 is not aligned/],
    ];
    for (const [iova, paddr, size, why] of cases) {
      const r = d.map({ iova, paddr, size, ref: 1 });
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.errno).toBe('EINVAL');
        expect(r.reason).toMatch(why);
      }
    }
    expect(d.runCount).toBe(0);
  });

  it('ERANGE beyond the input address width (io-pgtable: iova >> ias must be 0)', () => {
    const d = domain('intel-vtd'); // 48-bit
    const top = 1n << 48n;
    expect(d.map({ iova: top - 4n * K, paddr: 0n, size: 4n * K, ref: 1 }).ok).toBe(true); // the last page fits
    const r = d.map({ iova: top - 4n * K, paddr: 0n, size: 8n * K, ref: 2 });
    expect(r.ok ? 'ok' : r.errno).toBe('ERANGE');
    expect(d.map({ iova: top, paddr: 0n, size: 4n * K, ref: 3 }).ok).toBe(false);
    const omap = domain('omap'); // 32-bit
    expect(omap.map({ iova: 0xffff_f000n, paddr: 0n, size: 4n * K, ref: 1 }).ok).toBe(true);
    const r2 = omap.map({ iova: 0xfff0_0000n, paddr: 0n, size: 2n * M, ref: 2 });
    expect(r2.ok ? 'ok' : r2.errno).toBe('ERANGE');
    // An output address past 2^64 is out of range too.
    const r3 = d.map({ iova: 0n, paddr: (1n << 64n) - 4n * K, size: 8n * K, ref: 4 });
    expect(r3.ok ? 'ok' : r3.errno).toBe('ERANGE');
  });

  it('a 64-bit custom profile maps up to the last page of the space, not past it', () => {
    const d = new Domain(customProfile({ pgsizes: ['4K'], iovaBits: 64 }));
    expect(d.map({ iova: (1n << 64n) - 4n * K, paddr: 0n, size: 4n * K, ref: 1 }).ok).toBe(true);
    const r = d.map({ iova: (1n << 64n) - 4n * K, paddr: 0n, size: 8n * K, ref: 2 });
    expect(r.ok ? 'ok' : r.errno).toBe('ERANGE');
  });

  it('EEXIST on any overlap (arm_lpae_init_pte: "We require an unmap first"), naming the live mapping', () => {
    const d = domain('arm-lpae-4k');
    map(d, 2n * M, 2n * M, 2n * M, 1);
    const overlaps: Array<[bigint, bigint]> = [
      [3n * M, 2n * M], // tail overlaps
      [0n, 2n * M + 4n * K], // head overlaps the first page
      [0n, 8n * M], // contains the whole mapping
      [4n * M - 4n * K, 4n * K], // the last page only
    ];
    for (const [iova, size] of overlaps) {
      const r = d.map({ iova, paddr: iova, size, ref: 9 });
      expect(r.ok ? 'ok' : r.errno).toBe('EEXIST');
      if (!r.ok) expect(r.reason).toMatch(/0x200000\.\.0x400000 is already mapped \(by #1\)/);
    }
    // Touching is not overlapping.
    expect(d.map({ iova: 4n * M, paddr: 0n, size: 2n * M, ref: 2 }).ok).toBe(true);
    expect(d.map({ iova: 0n, paddr: 0n, size: 2n * M, ref: 3 }).ok).toBe(true);
  });

  it('is atomic: a refused map leaves runs and table counts as they were', () => {
    const d = domain('intel-vtd');
    map(d, G, G, G, 1);
    const before = d.stats();
    const runs = live(d);
    expect(d.map({ iova: 0n, paddr: 0n, size: G + 4n * K, ref: 2 }).ok).toBe(false);
    expect(live(d)).toEqual(runs);
    expect(d.stats()).toEqual(before);
  });
});

describe('unmap, legacy (the 2011 iommu_unmap loop: the driver removes the whole page at iova)', () => {
  it('OMAP 2011: unmapping 4K inside a 1M section removes the whole 1M, with collateral on both sides', () => {
    // omap_iommu_unmap ignores the size and clears the entry holding da (a 1M section), returning
    // 1M; the core's loop stops because unmapped (1M) >= size (4K).
    const d = domain('omap');
    map(d, 0x100000n, 0x8010_0000n, M, 1);
    const u = d.unmap({ iova: 0x104000n, size: 4n * K });
    expect(u.ok).toBe(true);
    expect(u.unmappedSize).toBe(M);
    expect(removedOf(u)).toEqual([[0x100000n, M, 1n, 1]]);
    expect(pieces(u.collateral)).toEqual([
      [0x100000n, 0x104000n, 1],
      [0x105000n, 0x200000n, 1],
    ]);
    expect(u.leftMapped).toEqual([]);
    expect(d.runCount).toBe(0);
    expect(u.hw.entriesCleared).toEqual([1, 0]); // one section descriptor in the first level
    expect(u.hw.invalidations).toEqual([rng(0x100000n, 0x200000n)]);
  });

  it('OMAP: 4K inside a 64K large page removes all 16 repeated entries, and the emptied L2 table', () => {
    const d = domain('omap');
    map(d, 0x30000n, 0x30000n, 64n * K, 1);
    expect(d.stats().levels.map((l) => [l.entries, l.tables])).toEqual([
      [0, 1],
      [16, 1],
    ]);
    const u = d.unmap({ iova: 0x3f000n, size: 4n * K });
    expect(u.unmappedSize).toBe(64n * K);
    expect(u.hw.entriesCleared).toEqual([1, 16]); // the table descriptor, the 16 copies
    expect(u.hw.tablesFreed).toEqual([0, 1]);
    expect(d.stats().levels.map((l) => [l.entries, l.tables])).toEqual([
      [0, 1],
      [0, 0],
    ]);
  });

  it('Intel VT-d: 4K inside a 2M superpage unmaps the whole 2M ("horrid API" rounds the size up)', () => {
    const d = domain('intel-vtd');
    map(d, 0x200000n, 0x8000_0000n, 2n * M, 7);
    const u = d.unmap({ iova: 0x201000n, size: 4n * K });
    expect(u.unmappedSize).toBe(2n * M);
    expect(pieces(u.collateral)).toEqual([
      [0x200000n, 0x201000n, 7],
      [0x202000n, 0x400000n, 7],
    ]);
    expect(d.find(0x300000n)).toBeUndefined();
  });

  it('iova advances by the size returned, so a misaligned start can skip the first page of the next map', () => {
    // [0x200000, 0x400000) is one 2M page (#1); 0x400000.. four 4K pages (#2). Request 0x201000 +
    // 0x202000 (ends 0x403000). Loop: page at 0x201000 is the 2M -> unmapped 2M, iova 0x401000;
    // 4K there -> 2M+4K, iova 0x402000; 4K there -> 2M+8K = size, stop. 0x400000 was never visited.
    const d = domain('intel-vtd');
    map(d, 0x200000n, 0x200000n, 2n * M, 1);
    map(d, 0x400000n, 0x400000n, 16n * K, 2);
    const u = d.unmap({ iova: 0x201000n, size: 0x202000n });
    expect(u.ok).toBe(true);
    expect(u.unmappedSize).toBe(0x202000n);
    expect(removedOf(u)).toEqual([
      [0x200000n, 2n * M, 1n, 1],
      [0x401000n, 4n * K, 2n, 2],
    ]);
    expect(pieces(u.collateral)).toEqual([[0x200000n, 0x201000n, 1]]);
    expect(u.leftMapped).toEqual([rng(0x400000n, 0x401000n)]);
    expect(live(d)).toEqual([
      [0x400000n, 4n * K, 1n, 0x400000n, 2],
      [0x403000n, 4n * K, 1n, 0x403000n, 2],
    ]);
  });

  it('stops at the first unmapped iova (driver returns 0) and leaves the rest of the request mapped', () => {
    const d = domain('intel-vtd');
    map(d, 0n, 0n, 8n * K, 1);
    map(d, 12n * K, 12n * K, 4n * K, 2); // hole at 8K..12K
    const u = d.unmap({ iova: 0n, size: 16n * K });
    expect(u.ok).toBe(true); // a short count, not an error
    expect(u.unmappedSize).toBe(8n * K);
    expect(u.leftMapped).toEqual([rng(12n * K, 16n * K)]);
    expect(live(d)).toEqual([[12n * K, 4n * K, 1n, 12n * K, 2]]);
  });

  it('stops as soon as unmapped >= size, which a large first page reaches early', () => {
    // 0x3ff000 is in the 2M page [0x200000, 0x400000): it goes (2M >= 12K) and the loop ends,
    // so the requested 0x400000..0x402000 stays mapped.
    const d = domain('intel-vtd');
    map(d, 0x200000n, 0x200000n, 2n * M, 1);
    map(d, 0x400000n, 0x400000n, 8n * K, 2);
    const u = d.unmap({ iova: 0x3ff000n, size: 0x3000n });
    expect(u.unmappedSize).toBe(2n * M);
    expect(pieces(u.collateral)).toEqual([[0x200000n, 0x3ff000n, 1]]);
    expect(u.leftMapped).toEqual([rng(0x400000n, 0x402000n)]);
  });

  it('nothing mapped: success with 0 bytes', () => {
    const d = domain('omap');
    const u = d.unmap({ iova: 0x10_0000n, size: M });
    expect([u.ok, u.unmappedSize, u.removed, u.leftMapped]).toEqual([true, 0n, [], []]);
  });

  it("the thread's guarantee: unmapping exactly an earlier map removes only it, next to other maps", () => {
    const d = domain('omap');
    map(d, 0n, 0n, M, 1);
    map(d, M, M, 17n * M, 2); // 1M x15 then a 16M supersection
    map(d, 18n * M, 18n * M, 64n * K, 3);
    const u = d.unmap({ iova: M, size: 17n * M });
    expect(u.unmappedSize).toBe(17n * M);
    expect(u.collateral).toEqual([]);
    expect(live(d).map((r) => r[4])).toEqual([1, 3]);
  });

  it('misaligned iova or size: EINVAL, nothing changes', () => {
    const d = domain('omap');
    map(d, 0n, 0n, M, 1);
    for (const cmd of [
      { iova: 0x800n, size: 4n * K },
      { iova: 0n, size: 0x1800n },
    ]) {
      const u = d.unmap(cmd);
      expect([u.ok, u.errno, u.unmappedSize]).toEqual([false, 'EINVAL', 0n]);
      expect(u.reason).toMatch(/not aligned to the smallest page size 4K/);
      expect(d.runCount).toBe(1);
    }
  });
});

describe('unmap, split (io-pgtable-arm before v6.13: arm_lpae_split_blk_unmap)', () => {
  it('ARM LPAE: a 4K hole in a 1G block leaves 511 x 2M and 511 x 4K pages, and removes only 4K', () => {
    // split_blk_unmap turns the 1G block into a table of 512 2M blocks, then the 2M block holding
    // the 4K into 512 4K pages, skipping the one unmapped: 511 of each size remain. Greedy map
    // of [1G, 1G+256M) and [1G+256M+4K, 2G) gives the same pages.
    const d = domain('arm-lpae-4k');
    map(d, G, G, G, 1);
    const hole = G + 256n * M;
    const u = d.unmap({ iova: hole, size: 4n * K });
    expect(u.ok).toBe(true);
    expect(u.unmappedSize).toBe(4n * K);
    expect(removedOf(u)).toEqual([[hole, 4n * K, 1n, 1]]);
    expect(u.collateral).toEqual([]);
    expect(u.leftMapped).toEqual([]);
    expect(u.rewritten.map((r) => [r.iova, r.pageSize, r.count])).toEqual([
      [G, 2n * M, 128n],
      [hole + 4n * K, 4n * K, 511n],
      [hole + 2n * M, 2n * M, 383n],
    ]);
    const bySize = new Map<bigint, bigint>();
    for (const r of d.runs()) bySize.set(r.pageSize, (bySize.get(r.pageSize) ?? 0n) + r.count);
    expect(bySize).toEqual(
      new Map([
        [2n * M, 511n],
        [4n * K, 511n],
      ]),
    );
    // Hardware: the L1 block entry is replaced by an L2 table (511 blocks + a table descriptor)
    // whose hole's slot points to a new L3 table of 511 pages.
    expect(u.hw.entriesCleared).toEqual([0, 1, 0, 0]);
    expect(u.hw.entriesWritten).toEqual([0, 1, 512, 511]);
    expect(u.hw.tablesAllocated).toEqual([0, 0, 1, 1]);
    expect(u.hw.invalidations).toEqual([rng(G, 2n * G)]);
    // The rest still translates to the same addresses.
    expect(d.walk(G + 5n * M).at(-1)?.output).toBe(G + 5n * M);
    expect(d.walk(hole + 4n * K).at(-1)?.output).toBe(hole + 4n * K);
    expect(d.walk(hole).at(-1)?.kind).toBe('invalid');
  });

  it('ARM v7s: a 4K hole at the start of a 16M supersection leaves 15 x 4K, 15 x 64K, 15 x 1M', () => {
    const d = domain('arm-v7s');
    map(d, 16n * M, 16n * M, 16n * M, 1);
    const u = d.unmap({ iova: 16n * M, size: 4n * K });
    expect(u.unmappedSize).toBe(4n * K);
    expect(u.rewritten.map((r) => [r.iova, r.pageSize, r.count])).toEqual([
      [16n * M + 4n * K, 4n * K, 15n],
      [16n * M + 64n * K, 64n * K, 15n],
      [17n * M, M, 15n],
    ]);
    // 16 repeated L1 entries go; 15 sections and one table descriptor come; the new L2 table
    // gets 15 small pages + 15 x 16 large-page entries = 255 of its 256 entries (all but the hole).
    expect(u.hw.entriesCleared).toEqual([16, 0]);
    expect(u.hw.entriesWritten).toEqual([16, 255]);
    expect(u.hw.tablesAllocated).toEqual([0, 1]);
  });

  it('a request across two maps cuts both, removes exactly the request, and keeps the owners', () => {
    const d = domain('arm-lpae-4k');
    map(d, 0n, 0n, 2n * M, 1);
    map(d, 2n * M, 2n * M, 2n * M, 2);
    const u = d.unmap({ iova: M, size: 2n * M });
    expect(u.unmappedSize).toBe(2n * M);
    expect(u.collateral).toEqual([]);
    expect(live(d)).toEqual([
      [0n, 4n * K, 256n, 0n, 1],
      [3n * M, 4n * K, 256n, 3n * M, 2],
    ]);
  });

  it('stops at the first hole, leaving the rest of the request mapped', () => {
    const d = domain('arm-lpae-4k');
    map(d, 0n, 0n, 8n * K, 1);
    map(d, 12n * K, 12n * K, 4n * K, 2);
    const u = d.unmap({ iova: 4n * K, size: 12n * K });
    expect([u.ok, u.unmappedSize]).toEqual([true, 4n * K]);
    expect(u.leftMapped).toEqual([rng(12n * K, 16n * K)]);
    expect(live(d).map((r) => r[0])).toEqual([0n, 12n * K]);
  });

  it('what-if: the same commands under another behaviour (unmap argument or resolveProfile)', () => {
    const legacyArm = domain('arm-lpae-4k', 'legacy');
    expect(legacyArm.profile.semantics).toBe('legacy');
    const a = domain('arm-lpae-4k');
    for (const d of [legacyArm, a]) map(d, 0n, 0n, 2n * M, 1);
    expect(legacyArm.unmap({ iova: 0n, size: 4n * K }).unmappedSize).toBe(2n * M);
    expect(a.clone().unmap({ iova: 0n, size: 4n * K }, 'legacy').unmappedSize).toBe(2n * M);
    expect(a.unmap({ iova: 0n, size: 4n * K }).unmappedSize).toBe(4n * K);
  });
});

describe('unmap, strict: VFIO type1 v2 (vfio_dma_do_unmap)', () => {
  it('EINVAL when the range cuts a mapping at either end; nothing changes', () => {
    const d = domain('vfio-type1v2');
    map(d, G, G, 4n * M, 1); // two 2M pages, one vfio_dma
    const before = d.stats();
    for (const [iova, size] of [
      [G, 2n * M], // end cuts
      [G + 2n * M, 2n * M], // start cuts
      [G + 2n * M, 8n * M], // start cuts, end in empty space
      [G - 2n * M, 4n * M], // end cuts
    ] as Array<[bigint, bigint]>) {
      const u = d.unmap({ iova, size });
      expect([u.ok, u.errno, u.unmappedSize, u.removed]).toEqual([false, 'EINVAL', 0n, []]);
      expect(u.reason).toMatch(/cuts through the mapping 0x40000000\.\.0x40400000 made by #1/);
      expect(u.leftMapped.length).toBe(1);
      expect(d.stats()).toEqual(before);
    }
    expect(d.unmap({ iova: G, size: 0n }).errno).toBe('EINVAL');
  });

  it('removes several whole mappings at once, across holes, and reports their total', () => {
    const d = domain('vfio-type1v2');
    map(d, 2n * M, 2n * M, 2n * M, 1);
    map(d, 6n * M, 0x1234_5000n, 4n * K, 2);
    map(d, G, 5n * G, G, 3);
    const u = d.unmap({ iova: 0n, size: 4n * G });
    expect([u.ok, u.unmappedSize]).toEqual([true, 2n * M + 4n * K + G]);
    expect(u.removed.map((r) => r.origin.ref)).toEqual([1, 2, 3]);
    expect(u.collateral).toEqual([]);
    expect(d.runCount).toBe(0);
  });

  it('nothing in the range: success with 0 bytes', () => {
    const d = domain('vfio-type1v2');
    map(d, G, G, 2n * M, 1);
    const u = d.unmap({ iova: 0n, size: 2n * M });
    expect([u.ok, u.errno, u.unmappedSize]).toEqual([true, undefined, 0n]);
  });

  it('EINVAL when iova + size wraps past 2^64', () => {
    const d = new Domain(customProfile({ base: 'vfio-type1v2', iovaBits: 64 }));
    const u = d.unmap({ iova: 1n << 63n, size: 1n << 63n });
    expect(u.ok).toBe(true); // ends exactly at 2^64: no wrap
    expect(d.unmap({ iova: 1n << 63n, size: (1n << 63n) + 4096n }).errno).toBe('EINVAL');
  });
});

describe('unmap, strict: iommufd (iopt_unmap_iova_range)', () => {
  function three(name: string): Domain {
    const d = domain(name);
    map(d, 2n * M, 2n * M, 2n * M, 1);
    map(d, 4n * M, 4n * M, 2n * M, 2);
    map(d, 6n * M, 6n * M, 2n * M, 3);
    return d;
  }

  it('removes areas in IOVA order until one sticks out: ENOENT, keeping the earlier removals', () => {
    const d = three('iommufd');
    const u = d.unmap({ iova: 2n * M, size: 5n * M });
    expect([u.ok, u.errno, u.unmappedSize]).toEqual([false, 'ENOENT', 4n * M]);
    expect(u.removed.map((r) => r.origin.ref)).toEqual([1, 2]);
    expect(u.reason).toMatch(/#3/);
    expect(u.leftMapped).toEqual([rng(6n * M, 7n * M)]);
    expect(live(d).map((r) => r[4])).toEqual([3]);
    // VFIO v2 refuses the same request up front: its end cuts #3.
    const v = three('vfio-type1v2');
    const uv = v.unmap({ iova: 2n * M, size: 5n * M });
    expect([uv.ok, uv.errno, uv.unmappedSize]).toEqual([false, 'EINVAL', 0n]);
    expect(v.runCount).toBe(3);
  });

  it('a range starting inside the first area: ENOENT at once, nothing removed', () => {
    const d = three('iommufd');
    const before = d.stats();
    const u = d.unmap({ iova: 3n * M, size: 5n * M });
    expect([u.errno, u.unmappedSize, u.removed]).toEqual(['ENOENT', 0n, []]);
    expect(d.stats()).toEqual(before);
  });

  it('nothing mapped in the range: ENOENT (VFIO says success with 0)', () => {
    const d = three('iommufd');
    const u = d.unmap({ iova: G, size: G });
    expect([u.ok, u.errno, u.unmappedSize]).toEqual([false, 'ENOENT', 0n]);
    expect(u.reason).toMatch(/nothing is mapped/);
  });

  it('EINVAL for length 0, EOVERFLOW when iova + length wraps', () => {
    const d = new Domain(customProfile({ base: 'iommufd', iovaBits: 64 }));
    expect(d.profile.emptyUnmapErrno).toBe('ENOENT');
    expect(d.unmap({ iova: 0n, size: 0n }).errno).toBe('EINVAL');
    expect(d.unmap({ iova: 1n << 63n, size: 1n << 63n }).errno).toBe('ENOENT'); // fits, nothing there
    expect(d.unmap({ iova: 1n << 63n, size: (1n << 63n) + 4096n }).errno).toBe('EOVERFLOW');
  });

  it('whole areas, even many and with holes between, go without error', () => {
    const d = three('iommufd');
    const u = d.unmap({ iova: 0n, size: G });
    expect([u.ok, u.unmappedSize]).toEqual([true, 6n * M]);
  });
});

describe('Domain bookkeeping', () => {
  it('find and runs(start, end) see the run holding an address and those intersecting a range', () => {
    const d = domain('intel-vtd');
    map(d, 0x1ff000n, 0x1ff000n, 0x401000n, 1);
    expect(d.find(0x1ff000n)?.pageSize).toBe(4n * K);
    expect(d.find(0x5fffffn)?.pageSize).toBe(2n * M);
    expect(d.find(0x600000n)).toBeUndefined();
    expect(d.find(0x1fe000n)).toBeUndefined();
    expect([...d.runs(0x300000n, 0x300001n)].map((r) => r.iova)).toEqual([0x200000n]);
    expect([...d.runs(0n, 0x200000n)].map((r) => r.iova)).toEqual([0x1ff000n]);
    expect([...d.runs()].map((r) => runEnd(r))).toEqual([0x200000n, 0x600000n]);
  });

  it('clone is independent of the original', () => {
    const d = domain('intel-vtd');
    map(d, 0n, 0n, 2n * M, 1);
    const c = d.clone();
    map(c, 2n * M, 2n * M, 2n * M, 2);
    d.unmap({ iova: 0n, size: 2n * M });
    expect(live(d)).toEqual([]);
    expect(live(c).map((r) => r[4])).toEqual([1, 2]);
    expect(d.stats().levels[2]!.entries).toBe(0);
    expect(c.stats().levels[2]!.entries).toBe(2);
  });

  it('load restores saved runs with the same table counts', () => {
    const d = domain('arm-v7s');
    map(d, 0x10000n, 0x10000n, 17n * M + 64n * K, 1);
    d.unmap({ iova: 0x20000n, size: 4n * K });
    const e = domain('arm-v7s');
    e.load(d.runs());
    expect(e.stats()).toEqual(d.stats());
    expect(live(e)).toEqual(live(d));
  });
});

describe('profiles', () => {
  it('built-in page sizes and widths are those of the kernel sources', () => {
    const p = (n: string) => findBuiltinProfile(n)!;
    expect(p('omap').pgsizeBitmap).toBe((4n * K) | (64n * K) | M | (16n * M)); // OMAP_IOMMU_PGSIZES
    expect(p('omap').iovaBits).toBe(32);
    expect(p('intel-vtd').pgsizeBitmap).toBe((4n * K) | (2n * M) | G);
    expect(p('intel-vtd').format.levels.map((l) => l.name)).toEqual(['PML4', 'PDPT', 'PD', 'PT']);
    expect(p('intel-vtd-5level').format.levels.length).toBe(5);
    // AMD_IOMMU_PGSIZES = GENMASK_ULL(51, 12) ^ SZ_512G
    expect(p('amd-v1').pgsizeBitmap).toBe(((1n << 52n) - (1n << 12n)) ^ (1n << 39n));
    expect(p('amd-v1').iovaBits).toBe(52);
    expect(p('arm-lpae-16k').pgsizeBitmap).toBe((16n * K) | (32n * M));
    expect(p('arm-lpae-64k').pgsizeBitmap).toBe((64n * K) | (512n * M));
    // 16K granule, 48 bits: 11 bits per level, 4 levels, a 2-entry top table.
    expect(p('arm-lpae-16k').format.levels.map((l) => [l.name, l.shift, l.entries])).toEqual([
      ['L0', 47, 2],
      ['L1', 36, 2048],
      ['L2', 25, 2048],
      ['L3', 14, 2048],
    ]);
    expect(p('arm-lpae-64k').format.levels.map((l) => [l.name, l.shift, l.entries])).toEqual([
      ['L1', 42, 64],
      ['L2', 29, 8192],
      ['L3', 16, 8192],
    ]);
    expect(p('vfio-type1v2').semantics).toBe('strict');
    expect(p('vfio-type1v2').emptyUnmapErrno).toBeUndefined();
    expect(p('iommufd').emptyUnmapErrno).toBe('ENOENT');
    for (const b of BUILTIN_PROFILES) expect(b.pgsizeBitmap & ((1n << BigInt(b.iovaBits)) - 1n)).not.toBe(0n);
  });

  it('custom profiles: bad input is refused with a message naming the problem', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ pgsizes: [] }, /pgsizes: the page-size bitmap is empty/],
      [{ pgsizeBitmap: 0 }, /page-size bitmap is empty/],
      [{ pgsizes: ['4K', '12K'] }, /pgsizes\[1\]: 0x3000 is not a power of two/],
      [{ pgsizes: ['4K', '4K'] }, /pgsizes\[1\]: 4K is listed twice/],
      [{ pgsizes: ['4K'], iovaBits: 65 }, /iovaBits: 65 is outside 1\.\.64/],
      [{ pgsizes: ['4K'], iovaBits: 0 }, /iovaBits: 0 is outside 1\.\.64/],
      [{ pgsizes: ['4K'], iovaBits: 12 }, /smallest page \(4K\) does not fit in a 12-bit address space/],
      [{ pgsizes: ['4X'] }, /pgsizes\[0\]: unknown size suffix "X"/],
      [{ pgsizeBitmap: '0x1_0000_0000_0000_0000' }, /pgsizeBitmap: .* does not fit in 64 bits/],
      [{ pgsizes: ['4K'], pgsizeBitmap: '0x1000' }, /either pgsizes or pgsizeBitmap/],
      [{}, /needs its page sizes/],
      [{ base: 'nope' }, /base: unknown profile "nope"/],
      [{ pgsizes: ['4K'], color: 'red' }, /color/],
      [{ pgsizes: ['4K'], iovaBits: 40.5 }, /iovaBits/],
    ];
    for (const [spec, why] of bad) expect(() => customProfile(spec), JSON.stringify(spec)).toThrow(why);
    expect(() => customProfile({ pgsizes: [] })).toThrow(ProfileError);
    expect(() => resolveProfile('nope')).toThrow(/built-in profiles: omap, intel-vtd/);
  });

  it('custom profiles: sizes by list or bitmap, a generic radix format, or the base format when it fits', () => {
    const a = customProfile({ name: 'a', pgsizes: ['4K', '8K', '64K'], iovaBits: 24 });
    expect(a.pgsizeBitmap).toBe(0x13000n);
    expect(a.semantics).toBe('legacy');
    expect(a.format.levels.map((l) => [l.shift, l.entries])).toEqual([
      [21, 8],
      [12, 512],
    ]);
    expect(customProfile({ pgsizeBitmap: '0x40201000' }).pgsizeBitmap).toBe((4n * K) | (2n * M) | G);
    const v7 = customProfile({ base: 'arm-v7s', pgsizes: ['4K', '1M'] });
    expect(v7.format.name).toBe('arm-v7s');
    expect(v7.semantics).toBe('split');
    // A 39-bit VT-d domain: the base's 48-bit format does not apply, a 3-level generic one does.
    const v39 = customProfile({ base: 'intel-vtd', iovaBits: 39 });
    expect(v39.format.levels.map((l) => l.shift)).toEqual([30, 21, 12]);
    // 8K fits OMAP's format as 2 repeated L2 entries (as 64K is 16); 1K is below its smallest
    // entry, so that profile gets a generic format with 1K leaves instead.
    expect(customProfile({ base: 'omap', pgsizes: ['4K', '8K'] }).format.name).toBe('omap');
    const small = customProfile({ base: 'omap', pgsizes: ['1K', '4K'] });
    expect([small.format.name, small.format.levels.at(-1)?.shift]).toEqual(['generic', 10]);
    // iommufd's ENOENT comes along with its strict behaviour, not with another one.
    expect(customProfile({ base: 'iommufd', pgsizes: ['4K'] }).emptyUnmapErrno).toBe('ENOENT');
    expect(customProfile({ base: 'iommufd', semantics: 'legacy' }).emptyUnmapErrno).toBeUndefined();
  });

  it('a profile survives its JSON descriptor (events store it): built-in, what-if and custom with a base', () => {
    const cases = [
      resolveProfile('omap'),
      resolveProfile('arm-lpae-4k', 'legacy'),
      resolveProfile('iommufd'),
      customProfile({ name: 'v7-like', base: 'arm-v7s', pgsizes: ['4K', '1M'] }),
      customProfile({ name: 'fd', base: 'iommufd', pgsizes: ['4K'] }),
      customProfile({ name: 'plain', pgsizes: ['4K', '16K', '2M'], iovaBits: 40, semantics: 'split' }),
    ];
    for (const p of cases) {
      const desc = describeProfile(p);
      const back = profileFromDescriptor(JSON.parse(JSON.stringify(desc)));
      expect(back.pgsizeBitmap, p.name).toBe(p.pgsizeBitmap);
      expect(back.iovaBits).toBe(p.iovaBits);
      expect(back.semantics).toBe(p.semantics);
      expect(back.emptyUnmapErrno).toBe(p.emptyUnmapErrno);
      // The same page-table format: table counts after a replay must not change.
      expect(back.format, p.name).toEqual(p.format);
    }
  });
});
