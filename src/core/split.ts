/**
 * The page split of `iommu_map()` (drivers/iommu/iommu.c, iommu_pgsize()): at each step the
 * largest supported page that is no larger than what remains and to which both the IOVA and the
 * physical address are aligned. Computed as runs of equal pages, so a 1 GiB region of 4K pages
 * is one run of 262,144 pages, not 262,144 objects.
 */
import { alignmentOf } from './address.js';

/** `count` contiguous pages of `pageSize` bytes starting at `iova` (and at `paddr`). */
export interface PageRun {
  iova: bigint;
  paddr: bigint;
  pageSize: bigint;
  count: bigint;
}

/** Bytes covered by a run. */
export function runBytes(r: PageRun): bigint {
  return r.pageSize * r.count;
}

/**
 * Splits [iova, iova+size) mapped at paddr into runs of supported pages. The caller has
 * checked that iova, paddr and size are aligned to the smallest page (so a page always fits).
 * Throws if no page fits (the kernel treats that as a bug).
 */
export function splitRegion(iova: bigint, paddr: bigint, size: bigint, pgsizeBitmap: bigint): PageRun[] {
  const runs: PageRun[] = [];
  let va = iova;
  let pa = paddr;
  let remaining = size;
  while (remaining > 0n) {
    const align = alignmentOf(va | pa);
    const limit = remaining < align ? remaining : align;
    // Supported sizes <= limit; the largest of them is the page.
    const candidates = pgsizeBitmap & ((1n << BigInt(limit.toString(2).length)) - 1n);
    if (candidates === 0n) {
      throw new RangeError(`no supported page fits at iova 0x${va.toString(16)} (remaining 0x${remaining.toString(16)})`);
    }
    const pageSize = 1n << BigInt(candidates.toString(2).length - 1);
    let count = remaining / pageSize;
    // The next larger supported size: once iova reaches its alignment (and paddr with it) and
    // enough remains, the greedy choice changes; stop the run there.
    const larger = pgsizeBitmap & ~((pageSize << 1n) - 1n);
    if (larger !== 0n) {
      const next = larger & -larger;
      if (((va ^ pa) & (next - 1n)) === 0n) {
        const toBoundary = (next - (va & (next - 1n))) / pageSize;
        if (toBoundary < count && remaining - toBoundary * pageSize >= next) count = toBoundary;
      }
    }
    runs.push({ iova: va, paddr: pa, pageSize, count });
    const bytes = pageSize * count;
    va += bytes;
    pa += bytes;
    remaining -= bytes;
  }
  return runs;
}

/** The same split one page at a time, exactly as the kernel's loop does it: the reference for tests. */
export function splitRegionPagewise(iova: bigint, paddr: bigint, size: bigint, pgsizeBitmap: bigint): Array<[bigint, bigint, bigint]> {
  const pages: Array<[bigint, bigint, bigint]> = [];
  let va = iova;
  let pa = paddr;
  let remaining = size;
  while (remaining > 0n) {
    let best = 0n;
    for (let b = 0n; b < 64n; b++) {
      const s = 1n << b;
      if ((pgsizeBitmap & s) === 0n) continue;
      if (s > remaining) break;
      if (((va | pa) & (s - 1n)) !== 0n) continue;
      best = s;
    }
    if (best === 0n) throw new RangeError('no supported page fits');
    pages.push([va, pa, best]);
    va += best;
    pa += best;
    remaining -= best;
  }
  return pages;
}
