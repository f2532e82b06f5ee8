/**
 * A set of disjoint half-open IOVA intervals, each carrying a value (e.g. the map command it
 * came from), in a B+ tree keyed by start: add, subtract and overlap queries cost O(log n + k).
 * Used for mapping intent: what a caller believes is mapped.
 *
 * A ledger holds hundreds of thousands of intervals (every mapping a caller has not unmapped), so
 * an interval keeps its bounds as tree keys (treekey.ts: numbers below 2^53, bigints only above)
 * and computes the set's work on them; `start` and `end` give them as bigints when asked.
 */
import * as btree from 'sorted-btree';
import type { Range } from './address.js';
import { cmpKey, keyOf, type TreeKey } from './treekey.js';

type BTreeCtor = typeof btree.default.default;
const cjs = (btree as unknown as { default: BTreeCtor | { default: BTreeCtor } }).default;
const BTree: BTreeCtor = typeof cjs === 'function' ? cjs : cjs.default;

const big = (k: TreeKey): bigint => (typeof k === 'bigint' ? k : BigInt(k));

export class Interval<V> implements Range {
  constructor(
    /** The first byte, as a tree key. */
    readonly lo: TreeKey,
    /** The byte after the last, as a tree key. */
    readonly hi: TreeKey,
    readonly value: V,
    /**
     * A number the set's owner may keep with this very interval (-1 when made here). The pieces
     * of one add or subtract share their value, so per-piece data cannot live in the value: the
     * ledger keeps each interval's intent row id here.
     */
    public tag = -1,
  ) {}

  get start(): bigint {
    return big(this.lo);
  }

  get end(): bigint {
    return big(this.hi);
  }
}

export class IntervalSet<V> {
  private tree = new BTree<TreeKey, Interval<V>>(undefined, cmpKey);
  /** Reused for pair lookups (read at once, never kept). */
  private readonly pair: [TreeKey, Interval<V>] = [0, undefined as unknown as Interval<V>];

  get size(): number {
    return this.tree.size;
  }

  /**
   * Intervals that intersect [start, end), in order. An empty range (end = start) meets the
   * interval strictly around start, if any, so subtracting it cuts that interval in two there.
   */
  overlapping(start: bigint, end: bigint): Interval<V>[] {
    return this.within(keyOf(start), keyOf(end), []);
  }

  /** Whether any interval intersects [start, end). */
  intersects(start: bigint, end: bigint): boolean {
    // The last interval starting before end is the only candidate that starts at or before
    // start; any other one starts inside the range.
    const last = this.tree.nextLowerPair(keyOf(end), this.pair)?.[1];
    return last !== undefined && last.hi > keyOf(start);
  }

  /** Does the set cover every byte of [start, end)? */
  covers(start: bigint, end: bigint): boolean {
    const ke = keyOf(end);
    let cursor = keyOf(start);
    for (const iv of this.within(cursor, ke, [])) {
      if (iv.lo > cursor) return false;
      if (iv.hi > cursor) cursor = iv.hi;
    }
    return cursor >= ke;
  }

  /** Adds [start, end) with a value; the parts already covered keep their old value. Returns what was added. */
  add(start: bigint, end: bigint, value: V): Interval<V>[] {
    const ke = keyOf(end);
    const added: Interval<V>[] = [];
    let cursor = keyOf(start);
    for (const iv of this.within(cursor, ke, [])) {
      if (iv.lo > cursor) added.push(new Interval(cursor, iv.lo, value));
      if (iv.hi > cursor) cursor = iv.hi;
    }
    if (cursor < ke) added.push(new Interval(cursor, ke, value));
    for (const iv of added) this.tree.set(iv.lo, iv);
    return added;
  }

  /**
   * Removes [start, end). Returns the intervals taken out whole (`removed`) and the pieces put
   * back for the parts of them outside the range (`kept`, with the same value).
   */
  subtract(start: bigint, end: bigint): { removed: Interval<V>[]; kept: Interval<V>[] } {
    const ks = keyOf(start);
    const ke = keyOf(end);
    const removed = this.within(ks, ke, []);
    const kept: Interval<V>[] = [];
    for (const iv of removed) {
      // A piece kept at the same start replaces the interval by set below (the same tree).
      if (iv.lo < ks) kept.push(new Interval(iv.lo, ks, iv.value));
      else this.tree.delete(iv.lo);
      if (iv.hi > ke) kept.push(new Interval(ke, iv.hi, iv.value));
    }
    for (const iv of kept) this.tree.set(iv.lo, iv);
    return { removed, kept };
  }

  /** Inserts an interval as it was saved (restoring state); it must not overlap. */
  load(start: bigint, end: bigint, value: V, tag: number): void {
    const iv = new Interval(keyOf(start), keyOf(end), value, tag);
    this.tree.set(iv.lo, iv);
  }

  *[Symbol.iterator](): IterableIterator<Interval<V>> {
    for (const [, iv] of this.tree.entries()) yield iv;
  }

  /** Intervals that intersect [ks, ke) (tree keys), in order, pushed on `out`. */
  private within(ks: TreeKey, ke: TreeKey, out: Interval<V>[]): Interval<V>[] {
    // The last interval starting before ke: when it starts at or before ks, it is the only one
    // that can intersect (intervals are disjoint), so one lookup answers.
    const last = this.tree.nextLowerPair(ke, this.pair)?.[1];
    if (last === undefined) return out;
    if (last.lo <= ks) {
      if (last.hi > ks) out.push(last);
      return out;
    }
    const before = this.tree.getPairOrNextLower(ks, this.pair)?.[1];
    const from = before !== undefined && before.hi > ks ? before.lo : ks;
    // Keys in [from, ke), in order.
    this.tree.forRange(from, ke, false, (_k: TreeKey, iv: Interval<V>) => {
      if (iv.hi > ks) out.push(iv);
    });
    return out;
  }
}
