/**
 * Which bytes of an address space a trace has ever touched (mapped or unmapped), as merged
 * half-open ranges in a B+ tree keyed by start. An unmap that finds a hole the trace never
 * touched in a space may have been mapped there before the trace began; a hole the trace did
 * touch was unmapped in the trace, so a pre-trace mapping cannot explain it (route.ts).
 *
 * Adjacent and overlapping ranges merge, so a space whose allocator reuses its IOVAs (Linux's
 * iommu-dma) stays a few ranges however long the trace.
 */
import { BTree } from '../core/btree.js';
import { cmpKey, keyOf, type TreeKey } from '../core/treekey.js';

interface Span {
  start: bigint;
  end: bigint;
}

const big = (k: TreeKey): bigint => (typeof k === 'bigint' ? k : BigInt(k));

/**
 * The ranges as start key -> end key: plain numbers below 2^53 (treekey.ts), so the tree's key
 * and value arrays hold unboxed doubles, not an object and two bigints per range.
 */
export class Coverage {
  private tree = new BTree<TreeKey, TreeKey>(undefined, cmpKey);
  private readonly pair: [TreeKey, TreeKey] = [0, 0];

  get size(): number {
    return this.tree.size;
  }

  /** Adds [start, end), merging with the ranges it overlaps or touches. */
  add(start: bigint, end: bigint): void {
    if (end <= start) return;
    let s = keyOf(start);
    let e = keyOf(end);
    const left = this.tree.getPairOrNextLower(s, this.pair);
    if (left && left[1] >= s) {
      if (left[1] >= e) return;
      s = left[0];
    }
    const leftStart = left ? left[0] : undefined;
    const leftEnd = left ? left[1] : undefined;
    // The ranges from s to end (inclusive: a range starting at end touches this one) merge in.
    const right = this.tree.getPairOrNextLower(e, this.pair);
    if (right && right[0] > s) {
      const gone: TreeKey[] = [];
      this.tree.forRange(s, e, true, (k: TreeKey, end: TreeKey) => {
        gone.push(k);
        if (end > e) e = end;
      });
      for (const g of gone) this.tree.delete(g);
    } else if (leftStart !== undefined && leftStart === s && leftEnd! > e) e = leftEnd!;
    this.tree.set(s, e);
  }

  /** Does any byte of [start, end) lie in the set? */
  touches(start: bigint, end: bigint): boolean {
    if (end <= start) return false;
    const last = this.tree.getPairOrNextLower(keyOf(end - 1n), this.pair);
    return last !== undefined && last[1] > keyOf(start);
  }

  *[Symbol.iterator](): IterableIterator<Span> {
    for (const [s, e] of this.tree.entries()) yield { start: big(s), end: big(e) };
  }
}
