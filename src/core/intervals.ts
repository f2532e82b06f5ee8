/**
 * A set of disjoint half-open IOVA intervals, each carrying a number (e.g. the position of the
 * map command it came from), in a B+ tree keyed by start: add, subtract and overlap queries cost
 * O(log n + k). Used for mapping intent: what a caller believes is mapped.
 *
 * A ledger holds hundreds of thousands of intervals (every mapping a caller has not unmapped), so
 * the set keeps no object per interval: the tree maps each start (a tree key, treekey.ts) to a
 * slot of typed-array columns holding the end, the value and the tag. What the set hands out are
 * `Interval` views made for the call, valid until the set next changes.
 */
import type { Range } from './address.js';
import { cmpKey, keyOf, type TreeKey } from './treekey.js';
import { BTree } from './btree.js';

const big = (k: TreeKey): bigint => (typeof k === 'bigint' ? k : BigInt(k));

/** One interval of a set, as it was when handed out. */
export class Interval implements Range {
  constructor(
    /** The first byte, as a tree key. */
    readonly lo: TreeKey,
    /** The byte after the last, as a tree key. */
    readonly hi: TreeKey,
    readonly value: number,
    private t: number,
    /** The set and slot the tag is written back to (none once the interval left the set). */
    private readonly owner: IntervalSet | undefined,
    private readonly slot: number,
  ) {}

  get start(): bigint {
    return big(this.lo);
  }

  get end(): bigint {
    return big(this.hi);
  }

  /**
   * A number the set's owner may keep with this very interval (-1 when made by the set). The
   * pieces of one add or subtract share their value, so per-piece data cannot live in the value:
   * the ledger keeps each interval's intent row id here. Setting it on a view of an interval
   * still in the set sets it in the set.
   */
  get tag(): number {
    return this.t;
  }

  set tag(v: number) {
    this.t = v;
    if (this.owner !== undefined) this.owner.retag(this.slot, v);
  }
}

export class IntervalSet {
  /** Start -> slot. */
  private tree = new BTree<TreeKey, number>(undefined, cmpKey);
  /** By slot: the end (NaN when it is 2^53 or more: then in `bigEnd`), the value and the tag. */
  private end = new Float64Array(64);
  private val = new Float64Array(64);
  private tags = new Float64Array(64);
  private readonly bigEnd = new Map<number, bigint>();
  /** Slots freed, reused first; slots below `used` and not free are in the tree. */
  private free: number[] = [];
  private used = 0;
  /** Reused for pair lookups (read at once, never kept). */
  private readonly pair: [TreeKey, number] = [0, 0];

  get size(): number {
    return this.tree.size;
  }

  /** Intervals that intersect [start, end), in order (none when the range is empty). */
  overlapping(start: bigint, end: bigint): Interval[] {
    const out: Interval[] = [];
    this.within(keyOf(start), keyOf(end), (lo, slot) => out.push(this.view(lo, slot)));
    return out;
  }

  /** Whether any interval intersects [start, end) (as `overlapping` finds them). */
  intersects(start: bigint, end: bigint): boolean {
    if (end <= start) return false;
    // The last interval starting before end is the only candidate that starts at or before
    // start; any other one starts inside the range.
    const last = this.tree.nextLowerPair(keyOf(end), this.pair);
    return last !== undefined && this.hiOf(last[1]) > keyOf(start);
  }

  /** Does the set cover every byte of [start, end)? */
  covers(start: bigint, end: bigint): boolean {
    const ke = keyOf(end);
    let cursor = keyOf(start);
    let gap = false;
    this.within(cursor, ke, (lo, slot) => {
      if (lo > cursor) gap = true;
      const hi = this.hiOf(slot);
      if (hi > cursor) cursor = hi;
    });
    return !gap && cursor >= ke;
  }

  /** Adds [start, end) with a value; the parts already covered keep their old value. Returns what was added. */
  add(start: bigint, end: bigint, value: number): Interval[] {
    const ke = keyOf(end);
    const gaps: TreeKey[] = [];
    let cursor = keyOf(start);
    this.within(cursor, ke, (lo, slot) => {
      if (lo > cursor) gaps.push(cursor, lo);
      const hi = this.hiOf(slot);
      if (hi > cursor) cursor = hi;
    });
    if (cursor < ke) gaps.push(cursor, ke);
    const added: Interval[] = [];
    for (let i = 0; i < gaps.length; i += 2) {
      const slot = this.put(gaps[i]!, gaps[i + 1]!, value, -1);
      added.push(new Interval(gaps[i]!, gaps[i + 1]!, value, -1, this, slot));
    }
    return added;
  }

  /**
   * Removes [start, end). Returns the intervals taken out whole (`removed`) and the pieces put
   * back for the parts of them outside the range (`kept`, with the same value).
   */
  subtract(start: bigint, end: bigint): { removed: Interval[]; kept: Interval[] } {
    const ks = keyOf(start);
    const ke = keyOf(end);
    const hit: Array<[TreeKey, number]> = [];
    this.within(ks, ke, (lo, slot) => hit.push([lo, slot]));
    const removed: Interval[] = [];
    const kept: Interval[] = [];
    for (const [lo, slot] of hit) {
      const hi = this.hiOf(slot);
      const value = this.val[slot]!;
      removed.push(new Interval(lo, hi, value, this.tags[slot]!, undefined, -1));
      // The piece before the range keeps the interval's start, so its slot and tree entry: only
      // its end and tag change. Otherwise the interval leaves the tree.
      if (lo < ks) {
        this.setEnd(slot, ks);
        this.tags[slot] = -1;
        kept.push(new Interval(lo, ks, value, -1, this, slot));
      } else {
        this.tree.delete(lo);
        this.release(slot);
      }
      if (hi > ke) kept.push(new Interval(ke, hi, value, -1, this, this.put(ke, hi, value, -1)));
    }
    return { removed, kept };
  }

  /** Inserts an interval as it was saved (restoring state); it must not overlap. */
  load(start: bigint, end: bigint, value: number, tag: number): void {
    this.put(keyOf(start), keyOf(end), value, tag);
  }

  *[Symbol.iterator](): IterableIterator<Interval> {
    for (const [lo, slot] of this.tree.entries()) yield this.view(lo, slot);
  }

  /** Sets the tag of the interval in `slot` (an `Interval` view's setter). */
  retag(slot: number, tag: number): void {
    this.tags[slot] = tag;
  }

  private view(lo: TreeKey, slot: number): Interval {
    return new Interval(lo, this.hiOf(slot), this.val[slot]!, this.tags[slot]!, this, slot);
  }

  private hiOf(slot: number): TreeKey {
    const hi = this.end[slot]!;
    return hi === hi ? hi : this.bigEnd.get(slot)!;
  }

  /** A slot for [lo, hi) (reusing a freed one), entered in the tree. */
  private put(lo: TreeKey, hi: TreeKey, value: number, tag: number): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.used++;
      if (slot === this.end.length) this.grow();
    }
    this.setEnd(slot, hi);
    this.val[slot] = value;
    this.tags[slot] = tag;
    this.tree.set(lo, slot);
    return slot;
  }

  private setEnd(slot: number, hi: TreeKey): void {
    if (this.end[slot] !== this.end[slot]) this.bigEnd.delete(slot);
    if (typeof hi === 'number') this.end[slot] = hi;
    else {
      this.end[slot] = NaN;
      this.bigEnd.set(slot, hi);
    }
  }

  private release(slot: number): void {
    if (this.end[slot] !== this.end[slot]) this.bigEnd.delete(slot);
    this.free.push(slot);
  }

  private grow(): void {
    const n = this.end.length * 2;
    const more = (a: Float64Array) => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    this.end = more(this.end);
    this.val = more(this.val);
    this.tags = more(this.tags);
  }

  /** Calls `f` with the start and slot of each interval that intersects [ks, ke) (tree keys), in order. */
  private within(ks: TreeKey, ke: TreeKey, f: (lo: TreeKey, slot: number) => void): void {
    // An empty range meets nothing (so subtracting one changes nothing, as iommu_unmap of 0 bytes).
    if (ke <= ks) return;
    // The last interval starting before ke: when it starts at or before ks, it is the only one
    // that can intersect (intervals are disjoint), so one lookup answers.
    const last = this.tree.nextLowerPair(ke, this.pair);
    if (last === undefined) return;
    const [lastLo, lastSlot] = last;
    if (lastLo <= ks) {
      if (this.hiOf(lastSlot) > ks) f(lastLo, lastSlot);
      return;
    }
    const before = this.tree.getPairOrNextLower(ks, this.pair);
    const from = before !== undefined && this.hiOf(before[1]) > ks ? before[0] : ks;
    // Keys in [from, ke), in order.
    this.tree.forRange(from, ke, false, (lo: TreeKey, slot: number) => {
      if (this.hiOf(slot) > ks) f(lo, slot);
    });
  }
}
