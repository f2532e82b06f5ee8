/**
 * Which bytes of an address space a trace has ever touched (mapped or unmapped), as merged
 * half-open ranges in a B+ tree keyed by start. An unmap that finds a hole the trace never
 * touched in a space may have been mapped there before the trace began; a hole the trace did
 * touch was unmapped in the trace, so a pre-trace mapping cannot explain it (route.ts).
 *
 * Adjacent and overlapping ranges merge, so a space whose allocator reuses its IOVAs (Linux's
 * iommu-dma) stays a few ranges however long the trace.
 */
import * as btree from 'sorted-btree';
import { cmpKey, keyOf, type TreeKey } from '../core/treekey.js';

type BTreeCtor = typeof btree.default.default;
const cjs = (btree as unknown as { default: BTreeCtor | { default: BTreeCtor } }).default;
const BTree: BTreeCtor = typeof cjs === 'function' ? cjs : cjs.default;

interface Span {
  start: bigint;
  end: bigint;
}

export class Coverage {
  private tree = new BTree<TreeKey, Span>(undefined, cmpKey);
  private readonly pair: [TreeKey, Span] = [0, undefined as unknown as Span];

  get size(): number {
    return this.tree.size;
  }

  /** Adds [start, end), merging with the ranges it overlaps or touches. */
  add(start: bigint, end: bigint): void {
    if (end <= start) return;
    let s = start;
    let e = end;
    const left = this.tree.getPairOrNextLower(keyOf(start), this.pair)?.[1];
    if (left && left.end >= start) {
      if (left.end >= end) return;
      s = left.start;
    }
    // The ranges from s to end (inclusive: a range starting at end touches this one) merge in.
    const right = this.tree.getPairOrNextLower(keyOf(end), this.pair)?.[1];
    if (right && right.start > s) {
      const gone: bigint[] = [];
      this.tree.forRange(keyOf(s), keyOf(end), true, (_k: TreeKey, sp: Span) => {
        gone.push(sp.start);
        if (sp.end > e) e = sp.end;
      });
      for (const g of gone) this.tree.delete(keyOf(g));
    } else if (left && left.start === s && left.end > e) e = left.end;
    this.tree.set(keyOf(s), { start: s, end: e });
  }

  /** Does any byte of [start, end) lie in the set? */
  touches(start: bigint, end: bigint): boolean {
    if (end <= start) return false;
    const last = this.tree.getPairOrNextLower(keyOf(end - 1n), this.pair)?.[1];
    if (!last) return false;
    if (last.end > start) return true;
    return false;
  }

  *[Symbol.iterator](): IterableIterator<Span> {
    for (const [, sp] of this.tree.entries()) yield sp;
  }
}
