/**
 * A set of disjoint half-open IOVA intervals, each carrying a value (e.g. the map command it
 * came from), in a B+ tree keyed by start: add, subtract and overlap queries cost O(log n + k).
 * Used for mapping intent: what a caller believes is mapped.
 */
import * as btree from 'sorted-btree';
import type { Range } from './address.js';
import { cmpKey, keyOf, type TreeKey } from './treekey.js';

type BTreeCtor = typeof btree.default.default;
const cjs = (btree as unknown as { default: BTreeCtor | { default: BTreeCtor } }).default;
const BTree: BTreeCtor = typeof cjs === 'function' ? cjs : cjs.default;

export interface Interval<V> extends Range {
  readonly value: V;
  /**
   * A number the set's owner may keep with this very interval (-1 when made here). The pieces of
   * one add or subtract share their value object, so per-piece data cannot live in the value:
   * the ledger keeps each interval's intent row id here.
   */
  tag: number;
}

export class IntervalSet<V> {
  private tree = new BTree<TreeKey, Interval<V>>(undefined, cmpKey);
  /** Reused for pair lookups (read at once, never kept). */
  private readonly pair: [TreeKey, Interval<V>] = [0, undefined as unknown as Interval<V>];

  get size(): number {
    return this.tree.size;
  }

  /** Intervals that intersect [start, end), in order. */
  overlapping(start: bigint, end: bigint): Interval<V>[] {
    const out: Interval<V>[] = [];
    // The last interval before end: when it starts at or before start, it is the only one that
    // can intersect (intervals are disjoint), so one lookup answers.
    const last = this.tree.getPairOrNextLower(keyOf(end - 1n), this.pair)?.[1];
    if (last === undefined) return out;
    if (last.start <= start) {
      if (last.end > start) out.push(last);
      return out;
    }
    const before = this.tree.getPairOrNextLower(keyOf(start), this.pair)?.[1];
    const from = before && before.end > start ? before.start : start;
    // Keys in [from, end), in order.
    this.tree.forRange(keyOf(from), keyOf(end), false, (_k: TreeKey, iv: Interval<V>) => {
      if (iv.end > start) out.push(iv);
    });
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
      if (iv.start > cursor) added.push({ start: cursor, end: iv.start, value, tag: -1 });
      if (iv.end > cursor) cursor = iv.end;
    }
    if (cursor < end) added.push({ start: cursor, end, value, tag: -1 });
    for (const iv of added) this.tree.set(keyOf(iv.start), iv);
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
      // A piece kept at the same start replaces the interval by set below (the same tree).
      if (iv.start < start) kept.push({ start: iv.start, end: start, value: iv.value, tag: -1 });
      else this.tree.delete(keyOf(iv.start));
      if (iv.end > end) kept.push({ start: end, end: iv.end, value: iv.value, tag: -1 });
    }
    for (const iv of kept) this.tree.set(keyOf(iv.start), iv);
    return { removed, kept };
  }

  /** Inserts an interval as it is (restoring saved state); it must not overlap. */
  load(iv: Interval<V>): void {
    this.tree.set(keyOf(iv.start), iv);
  }

  *[Symbol.iterator](): IterableIterator<Interval<V>> {
    for (const [, iv] of this.tree.entries()) yield iv;
  }
}
