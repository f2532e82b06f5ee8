/**
 * The page split of `iommu_map()` (drivers/iommu/iommu.c, iommu_pgsize()): at each step the
 * largest supported page that is no larger than what remains and to which both the IOVA and the
 * physical address are aligned. Computed as runs of equal pages, so a 1 GiB region of 4K pages
 * is one run of 262,144 pages, not 262,144 objects.
 */
import { alignmentOf } from './address.js';

/** What the greedy choice needs of a page-size bitmap, worked out once per bitmap. */
interface SizeTable {
  /** [k]: the largest supported page of at most 2^k bytes (k = 0..64), or 0n. */
  page: bigint[];
  /** [k]: log2 of page[k], as a bigint (for shifts). */
  shift: bigint[];
  /** [k]: the smallest supported page larger than page[k], or 0n. */
  next: bigint[];
}

const TWO_64 = 1n << 64n;
let lastBitmap = -1n;
let lastTable: SizeTable | undefined;
const tables = new Map<bigint, SizeTable>();

function sizeTable(bitmap: bigint): SizeTable {
  if (bitmap === lastBitmap && lastTable) return lastTable;
  let t = tables.get(bitmap);
  if (!t) {
    t = { page: [], shift: [], next: [] };
    let best = -1;
    for (let k = 0; k <= 64; k++) {
      if (k < 64 && (bitmap >> BigInt(k)) & 1n) best = k;
      let above = 0n;
      for (let j = best + 1; j < 64; j++) {
        if ((bitmap >> BigInt(j)) & 1n) {
          above = 1n << BigInt(j);
          break;
        }
      }
      t.page.push(best < 0 ? 0n : 1n << BigInt(best));
      t.shift.push(BigInt(Math.max(best, 0)));
      t.next.push(best < 0 ? 0n : above);
    }
    if (tables.size < 64) tables.set(bitmap, t);
  }
  lastBitmap = bitmap;
  lastTable = t;
  return t;
}

/** Index of the highest set bit of 0 < v <= 2^64 (fls in address.ts, without a string). */
function highBit(v: bigint): number {
  if (v < 0x20000000000000n) {
    const x = Number(v); // exact below 2^53
    return x < 4294967296 ? 31 - Math.clz32(x) : 63 - Math.clz32(Math.floor(x / 4294967296));
  }
  return v.toString(2).length - 1;
}

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
  // The tables cover bitmaps and sizes of 64 bits (all there are); anything else goes the long way.
  if (pgsizeBitmap < 0n || pgsizeBitmap >> 64n !== 0n || size > TWO_64) return splitRegionGeneric(iova, paddr, size, pgsizeBitmap);
  const runs: PageRun[] = [];
  let va = iova;
  let pa = paddr;
  let remaining = size;
  const table = sizeTable(pgsizeBitmap);
  while (remaining > 0n) {
    const align = alignmentOf(va | pa);
    const limit = remaining < align ? remaining : align;
    // Supported sizes <= limit; the largest of them is the page.
    const k = highBit(limit);
    const pageSize = table.page[k]!;
    if (pageSize === 0n) {
      throw new RangeError(`no supported page fits at iova 0x${va.toString(16)} (remaining 0x${remaining.toString(16)})`);
    }
    const count = runLength(va, pa, remaining, pageSize, table.shift[k]!, table.next[k]!);
    runs.push({ iova: va, paddr: pa, pageSize, count });
    const bytes = pageSize * count;
    va += bytes;
    pa += bytes;
    remaining -= bytes;
  }
  return runs;
}

/**
 * How many pages of 2^shift bytes a run at va/pa takes: all that fit in `remaining`, unless the
 * next larger supported size (`next`, 0n when there is none) takes over first. Once va reaches
 * that size's alignment (and pa with it) and enough remains, the greedy choice changes: the run
 * stops there.
 */
function runLength(va: bigint, pa: bigint, remaining: bigint, pageSize: bigint, shift: bigint, next: bigint): bigint {
  const count = remaining >> shift;
  if (next !== 0n && ((va ^ pa) & (next - 1n)) === 0n) {
    const toBoundary = (next - (va & (next - 1n))) >> shift;
    if (toBoundary < count && remaining - toBoundary * pageSize >= next) return toBoundary;
  }
  return count;
}

/** splitRegion with the candidates worked out from the bitmap each time (any bitmap, any size). */
function splitRegionGeneric(iova: bigint, paddr: bigint, size: bigint, pgsizeBitmap: bigint): PageRun[] {
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
    const shift = BigInt(candidates.toString(2).length - 1);
    const pageSize = 1n << shift;
    const larger = pgsizeBitmap & ~((pageSize << 1n) - 1n);
    const count = runLength(va, pa, remaining, pageSize, shift, larger & -larger);
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
