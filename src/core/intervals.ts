/**
 * A set of disjoint half-open IOVA intervals, each carrying a value (e.g. the map command it
 * came from), in a B+ tree keyed by start: add, subtract and overlap queries cost O(log n + k).
 * Used for mapping intent: what a caller believes is mapped.
 */
import * as btree from 'sorted-btree';
import type { Range } from './address.js';

type BTreeCtor = typeof btree.default.default;
const cjs = (btree as unknown as { default: BTreeCtor | { default: BTreeCtor } }).default;
const BTree: BTreeCtor = typeof cjs === 'function' ? cjs : cjs.default;

export interface Interval<V> extends Range {
  readonly value: V;
}

const cmp = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

export class IntervalSet<V> {
  private tree = new BTree<bigint, Interval<V>>(undefined, cmp);

  get size(): number {
    return this.tree.size;
  }

  /** Intervals that intersect [start, end), in order. */
  overlapping(start: bigint, end: bigint): Interval<V>[] {
    const out: Interval<V>[] = [];
    const before = this.tree.getPairOrNextLower(start)?.[1];
    const from = before && before.end > start ? before.start : start;
    for (const [k, iv] of this.tree.entries(from)) {
      if (k >= end) break;
      if (iv.end > start) out.push(iv);
    }
    return out;
  }

  /** Does the set cover every byte of [start, end)? */
  covers(start: bigint, end: bigint): boolean {
    let cursor = start;
    for (const iv of this.overlapping(start, end)) {
      if (iv.start > cursor) return false;
      if (iv.end > cursor) cursor = iv.end;
    }
    return cursor >= end;
  }

  /** Adds [start, end) with a value; the parts already covered keep their old value. Returns what was added. */
  add(start: bigint, end: bigint, value: V): Interval<V>[] {
    const added: Interval<V>[] = [];
    let cursor = start;
    for (const iv of this.overlapping(start, end)) {
      if (iv.start > cursor) added.push({ start: cursor, end: iv.start, value });
      if (iv.end > cursor) cursor = iv.end;
    }
    if (cursor < end) added.push({ start: cursor, end, value });
    for (const iv of added) this.tree.set(iv.start, iv);
    return added;
  }

  /**
   * Removes [start, end). Returns the intervals taken out whole (`removed`) and the pieces put
   * back for the parts of them outside the range (`kept`, with the same value).
   */
  subtract(start: bigint, end: bigint): { removed: Interval<V>[]; kept: Interval<V>[] } {
    const removed = this.overlapping(start, end);
    const kept: Interval<V>[] = [];
    for (const iv of removed) {
      this.tree.delete(iv.start);
      if (iv.start < start) kept.push({ start: iv.start, end: start, value: iv.value });
      if (iv.end > end) kept.push({ start: end, end: iv.end, value: iv.value });
    }
    for (const iv of kept) this.tree.set(iv.start, iv);
    return { removed, kept };
  }

  /** Inserts an interval as it is (restoring saved state); it must not overlap. */
  load(iv: Interval<V>): void {
    this.tree.set(iv.start, iv);
  }

  *[Symbol.iterator](): IterableIterator<Interval<V>> {
    for (const [, iv] of this.tree.entries()) yield iv;
  }
}
