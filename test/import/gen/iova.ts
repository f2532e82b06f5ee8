/**
 * The IOVA allocator of Linux 6.1 iommu-dma (drivers/iommu/iova.c, drivers/iommu/dma-iommu.c),
 * as the trace generator needs it: where the next DMA mapping of a domain lands.
 *
 * - alloc_iova_fast(): sizes below 2^(IOVA_RANGE_CACHE_MAX_SIZE-1) pages are rounded up to a
 *   power of two; the per-CPU range cache (rcache) is tried first, then the rbtree.
 * - __alloc_and_insert_iova_range(): top-down "next fit" from the cached node (the last
 *   allocation), size-aligned to the rounded size, retrying once from the limit; freeing at or
 *   above the cached node moves it up (__cached_rbnode_delete_update), so freed space above is
 *   found again.
 * - free_iova_fast(): ranges of order < IOVA_RANGE_CACHE_MAX_SIZE go to the freeing CPU's
 *   magazine (loaded, then prev, then the depot) and stay allocated in the tree; the next
 *   allocation of the same order on that CPU pops the most recent one (LIFO). That is why a
 *   freshly unmapped IOVA comes back soon, and only on the CPU that freed it.
 *
 * Strict invalidation is modelled (iommu.strict=1): the IOVA is freed when it is unmapped, not
 * after a flush-queue timeout. Page frame numbers are plain numbers (exact up to 2^53).
 */

/** IOVA_RANGE_CACHE_MAX_SIZE in drivers/iommu/iova.c: orders 0..5 are cached. */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** IOVA_MAG_SIZE (6.1). */
const IOVA_MAG_SIZE = 128;
/** MAX_GLOBAL_MAGS. */
const MAX_GLOBAL_MAGS = 32;
/** IOVA_ANCHOR (~0UL): the node that always sorts last. */
const ANCHOR = Number.MAX_SAFE_INTEGER;

/** struct iova: an allocated range of page frames, pfn_lo..pfn_hi inclusive. */
interface IovaNode {
  lo: number;
  hi: number;
}

/** fls_long: 1-based index of the highest set bit, 0 for 0. */
function fls(x: number): number {
  let n = 0;
  for (let v = x; v >= 1; v = Math.floor(v / 2)) n++;
  return n;
}

/** order_base_2: ceil(log2(n)) for n >= 1. */
export function orderBase2(n: number): number {
  return n <= 1 ? 0 : fls(n - 1);
}

export function roundupPowOfTwo(n: number): number {
  return 2 ** orderBase2(n);
}

interface CpuRcache {
  loaded: number[];
  prev: number[];
}

interface Rcache {
  cpus: CpuRcache[];
  depot: number[][];
}

export class IovaDomain {
  /** The rbtree, as an array sorted by lo; the anchor is always last. */
  private readonly nodes: IovaNode[];
  private readonly anchor: IovaNode = { lo: ANCHOR, hi: ANCHOR };
  private cached32: IovaNode;
  private cached: IovaNode;
  private max32AllocSize: number;
  private readonly rcaches: Rcache[] = [];

  /**
   * init_iova_domain(): `startPfn` is the lowest allocatable frame (iommu-dma: max(1, aperture
   * start)), `dma32Pfn` the first frame above 4 GiB (1 << (32 - 12)).
   */
  constructor(
    readonly startPfn: number,
    readonly cpus: number,
    readonly dma32Pfn: number = 1 << 20,
  ) {
    this.nodes = [this.anchor];
    this.cached32 = this.anchor;
    this.cached = this.anchor;
    this.max32AllocSize = dma32Pfn;
    for (let o = 0; o < IOVA_RANGE_CACHE_MAX_SIZE; o++) {
      const cpuCaches: CpuRcache[] = [];
      for (let c = 0; c < cpus; c++) cpuCaches.push({ loaded: [], prev: [] });
      this.rcaches.push({ cpus: cpuCaches, depot: [] });
    }
  }

  /** reserve_iova(): frames lo..hi (inclusive) are never handed out (MSI window, PCI windows). */
  reserve(lo: number, hi: number): void {
    this.insert({ lo, hi });
  }

  /**
   * alloc_iova_fast(): `pages` frames below `limitPfn` (inclusive: dma_limit >> PAGE_SHIFT),
   * allocating on `cpu`. Returns the first frame, or undefined when the space is full.
   */
  allocFast(pages: number, limitPfn: number, cpu: number): number | undefined {
    let size = pages;
    if (size < 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1)) size = roundupPowOfTwo(size);
    const cached = this.rcacheGet(size, limitPfn + 1, cpu);
    if (cached !== undefined) return cached;
    let pfn = this.allocRange(size, limitPfn + 1);
    if (pfn === undefined) {
      // flush_rcache: give every cached range back to the tree, then try once more.
      this.flushRcaches();
      pfn = this.allocRange(size, limitPfn + 1);
    }
    return pfn;
  }

  /** free_iova_fast(): `pages` is the mapped size (its order matches the rounded allocation). */
  freeFast(pfn: number, pages: number, cpu: number): void {
    if (this.rcacheInsert(pfn, pages, cpu)) return;
    this.freeRange(pfn);
  }

  /** Allocated ranges in the tree (cached ones included), for self-tests. */
  allocated(): ReadonlyArray<Readonly<IovaNode>> {
    return this.nodes.slice(0, -1);
  }

  private insert(node: IovaNode): void {
    let i = this.nodes.length - 1;
    while (i > 0 && this.nodes[i - 1]!.lo > node.lo) i--;
    this.nodes.splice(i, 0, node);
  }

  private getCached(limitPfn: number): IovaNode {
    return limitPfn <= this.dma32Pfn ? this.cached32 : this.cached;
  }

  /** iova_find_limit(): where a retry from the limit starts; the anchor above 4 GiB. */
  private findLimit(limitPfn: number): number {
    if (limitPfn > this.dma32Pfn) return this.nodes.length - 1;
    return this.nodes.findIndex((n) => n.hi >= limitPfn);
  }

  /** __alloc_and_insert_iova_range() with size_aligned; `limitPfn` exclusive. */
  private allocRange(size: number, limitPfn: number): number | undefined {
    const align = 2 ** fls(size - 1);
    if (limitPfn <= this.dma32Pfn && size >= this.max32AllocSize) return undefined;
    let idx = this.nodes.indexOf(this.getCached(limitPfn));
    const retryPfn = this.nodes[idx]!.hi;
    let highPfn = limitPfn;
    let lowPfn = this.startPfn;
    let newPfn: number;
    for (;;) {
      do {
        highPfn = Math.min(highPfn, this.nodes[idx]!.lo);
        newPfn = Math.floor((highPfn - size) / align) * align;
        idx--;
      } while (idx >= 0 && newPfn <= this.nodes[idx]!.hi && newPfn >= lowPfn);
      if (highPfn < size || newPfn < lowPfn) {
        if (lowPfn === this.startPfn && retryPfn < limitPfn) {
          highPfn = limitPfn;
          lowPfn = retryPfn + 1;
          idx = this.findLimit(limitPfn);
          continue;
        }
        this.max32AllocSize = size;
        return undefined;
      }
      break;
    }
    const node = { lo: newPfn, hi: newPfn + size - 1 };
    this.insert(node);
    // __cached_rbnode_insert_update
    if (node.hi < this.dma32Pfn) this.cached32 = node;
    else this.cached = node;
    return newPfn;
  }

  /** free_iova(): the range that starts at pfn leaves the tree. */
  private freeRange(pfn: number): void {
    const i = this.nodes.findIndex((n) => n.lo <= pfn && pfn <= n.hi && n !== this.anchor);
    if (i < 0) throw new Error(`iova: free of frame 0x${pfn.toString(16)}, which is not allocated`);
    const node = this.nodes[i]!;
    const next = this.nodes[i + 1]!;
    // __cached_rbnode_delete_update
    if (node === this.cached32 || (node.hi < this.dma32Pfn && node.lo >= this.cached32.lo)) this.cached32 = next;
    if (node.lo < this.dma32Pfn) this.max32AllocSize = this.dma32Pfn;
    if (node.lo >= this.cached.lo) this.cached = next;
    this.nodes.splice(i, 1);
  }

  /** iova_rcache_get(); `limitPfn` exclusive, as alloc_iova_fast passes limit_pfn + 1. */
  private rcacheGet(size: number, limitPfn: number, cpu: number): number | undefined {
    const order = orderBase2(size);
    if (order >= IOVA_RANGE_CACHE_MAX_SIZE) return undefined;
    const rc = this.rcaches[order]!;
    const c = rc.cpus[cpu]!;
    if (c.loaded.length === 0) {
      if (c.prev.length !== 0) [c.loaded, c.prev] = [c.prev, c.loaded];
      else if (rc.depot.length !== 0) c.loaded = rc.depot.pop()!;
      else return undefined;
    }
    // iova_magazine_pop(mag, limit_pfn - size): the newest entry that fits, swapped out.
    const max = limitPfn - size;
    for (let i = c.loaded.length - 1; i >= 0; i--) {
      const pfn = c.loaded[i]!;
      if (pfn <= max) {
        c.loaded[i] = c.loaded[c.loaded.length - 1]!;
        c.loaded.pop();
        return pfn;
      }
    }
    return undefined;
  }

  /** iova_rcache_insert(). */
  private rcacheInsert(pfn: number, pages: number, cpu: number): boolean {
    const order = orderBase2(pages);
    if (order >= IOVA_RANGE_CACHE_MAX_SIZE) return false;
    const rc = this.rcaches[order]!;
    const c = rc.cpus[cpu]!;
    if (c.loaded.length >= IOVA_MAG_SIZE) {
      if (c.prev.length < IOVA_MAG_SIZE) [c.loaded, c.prev] = [c.prev, c.loaded];
      else {
        if (rc.depot.length < MAX_GLOBAL_MAGS) rc.depot.push(c.loaded);
        else for (const p of c.loaded) this.freeRange(p);
        c.loaded = [];
      }
    }
    c.loaded.push(pfn);
    return true;
  }

  private flushRcaches(): void {
    for (const rc of this.rcaches) {
      for (const c of rc.cpus) {
        for (const p of c.loaded) this.freeRange(p);
        for (const p of c.prev) this.freeRange(p);
        c.loaded = [];
        c.prev = [];
      }
      for (const mag of rc.depot) for (const p of mag) this.freeRange(p);
      rc.depot = [];
    }
  }
}
