/**
 * Worked examples of iommu_map's page split (drivers/iommu/iommu.c iommu_pgsize(); see
 * docs/kernel-facts.md §2). Every expectation is derived by hand from the greedy rule: at each step
 * the largest supported page <= what remains and to which both iova and paddr are aligned.
 */
import { describe, expect, it } from 'vitest';
import { runBytes, splitRegion, splitRegionPagewise, type PageRun } from '../../src/core/split.js';

const K = 1n << 10n;
const M = 1n << 20n;
const G = 1n << 30n;
const VTD = (4n * K) | (2n * M) | G; // 4K|2M|1G (Intel with 1G superpages, ARM LPAE 4K granule)
const OMAP = (4n * K) | (64n * K) | M | (16n * M);
const run = (iova: bigint, paddr: bigint, pageSize: bigint, count: bigint): PageRun => ({ iova, paddr, pageSize, count });

describe('splitRegion: worked examples', () => {
  it("kernel-facts' iommu_pgsize example: iova = pa = 0x1ff000, size 0x401000 on 4K|2M|1G -> 4K x1, then 2M x2", () => {
    expect(splitRegion(0x1ff000n, 0x1ff000n, 0x401000n, VTD)).toEqual([run(0x1ff000n, 0x1ff000n, 4n * K, 1n), run(0x200000n, 0x200000n, 2n * M, 2n)]);
  });

  it('a 1 GiB region at a 1G-aligned iova and paddr is one 1G page', () => {
    expect(splitRegion(G, 3n * G, G, VTD)).toEqual([run(G, 3n * G, G, 1n)]);
  });

  it('iova and paddr aligned differently: only pages both are aligned to (here 4K, all 512 of them)', () => {
    // 0x200000 is 2M-aligned, 0x201000 only 4K-aligned.
    expect(splitRegion(0x200000n, 0x201000n, 2n * M, VTD)).toEqual([run(0x200000n, 0x201000n, 4n * K, 512n)]);
  });

  it('iova and paddr with the same offset in a 2M page: 4K up to the boundary, 2M pages, 4K after', () => {
    // iova 0x1fe000 and pa 0x3fe000 are both 8K below a 2M boundary; 2 pages + 2 x 2M + 3 pages.
    expect(splitRegion(0x1fe000n, 0x3fe000n, 2n * 4n * K + 4n * M + 3n * 4n * K, VTD)).toEqual([
      run(0x1fe000n, 0x3fe000n, 4n * K, 2n),
      run(0x200000n, 0x400000n, 2n * M, 2n),
      run(0x600000n, 0x800000n, 4n * K, 3n),
    ]);
  });

  it('rises through every size and falls again (OMAP 4K|64K|1M|16M)', () => {
    // 0xfef000 is only 4K-aligned: 4K to 0xff0000, 64K to 0x1000000, then a 16M supersection;
    // what is left (2M + 3 x 64K + 4K) is too short for 16M, so 1M x2, 64K x3, 4K x1.
    const size = 0x1000n + 0x10000n + 16n * M + 2n * M + 3n * 64n * K + 0x1000n;
    expect(splitRegion(0xfef000n, 0xfef000n, size, OMAP)).toEqual([
      run(0xfef000n, 0xfef000n, 4n * K, 1n),
      run(0xff0000n, 0xff0000n, 64n * K, 1n),
      run(0x1000000n, 0x1000000n, 16n * M, 1n),
      run(0x2000000n, 0x2000000n, M, 2n),
      run(0x2200000n, 0x2200000n, 64n * K, 3n),
      run(0x2230000n, 0x2230000n, 4n * K, 1n),
    ]);
  });

  it('does not take a larger page when what remains is too short for it', () => {
    // 0x1f0000..0x210000 crosses the 2M boundary but no 2M fits: 64K x2 on OMAP.
    expect(splitRegion(0x1f0000n, 0x1f0000n, 0x20000n, OMAP)).toEqual([run(0x1f0000n, 0x1f0000n, 64n * K, 2n)]);
  });

  it('AMD v1 sizes that are not level sizes (8K, 16K, ...) are pages like any other', () => {
    const AMD_LOW = (4n * K) | (8n * K) | (16n * K) | (32n * K); // a slice of AMD_IOMMU_PGSIZES
    // 0x3000..0x1f000: 4K to 0x4000 (16K-aligned), 16K to 0x8000 (32K-aligned), 32K x2 to 0x18000,
    // then 0x7000 left: 16K, 8K, 4K.
    expect(splitRegion(0x3000n, 0x3000n, 0x1c000n, AMD_LOW)).toEqual([
      run(0x3000n, 0x3000n, 4n * K, 1n),
      run(0x4000n, 0x4000n, 16n * K, 1n),
      run(0x8000n, 0x8000n, 32n * K, 2n),
      run(0x18000n, 0x18000n, 16n * K, 1n),
      run(0x1c000n, 0x1c000n, 8n * K, 1n),
      run(0x1e000n, 0x1e000n, 4n * K, 1n),
    ]);
    expect(runBytes(run(0n, 0n, 8n * K, 3n))).toBe(24n * K);
  });

  it('address 0 is aligned to everything: the largest page that fits is used at once', () => {
    expect(splitRegion(0n, 0n, 3n * G + 2n * M, VTD)).toEqual([run(0n, 0n, G, 3n), run(3n * G, 3n * G, 2n * M, 1n)]);
  });

  it('1 GiB on a 4K-only bitmap is ONE run of 262,144 pages, not 262,144 objects', () => {
    const runs = splitRegion(G, 0x7000_0000n, G, 4n * K);
    expect(runs).toEqual([run(G, 0x7000_0000n, 4n * K, 262_144n)]);
  });

  it('128 TiB on 4K|2M|1G is one run of 131,072 1G pages (a per-page split would never finish)', () => {
    expect(splitRegion(0n, 0n, 1n << 47n, VTD)).toEqual([run(0n, 0n, G, 131_072n)]);
  });

  it('throws when no supported page fits (the kernel BUG_ONs; callers check alignment first)', () => {
    expect(() => splitRegion(0x1000n, 0x1000n, 0x800n, VTD)).toThrow(/no supported page fits/);
    expect(() => splitRegionPagewise(0x1000n, 0x1000n, 0x800n, VTD)).toThrow(/no supported page fits/);
  });
});

describe('splitRegionPagewise', () => {
  it('lists the same pages one by one', () => {
    expect(splitRegionPagewise(0x1ff000n, 0x1ff000n, 0x401000n, VTD)).toEqual([
      [0x1ff000n, 0x1ff000n, 4n * K],
      [0x200000n, 0x200000n, 2n * M],
      [0x400000n, 0x400000n, 2n * M],
    ]);
  });
});
