/**
 * The order stage: records are held for a short window of trace time before they are decided,
 * so that the decision can look at what was printed just after them.
 *
 * ftrace keeps one ring buffer per CPU and prints the records of all CPUs merged by timestamp.
 * Two things make the printed order differ from the order in which the kernel did things:
 * - ties: records of different CPUs with the same printed timestamp (microseconds, or a clock
 *   coarser than the events) come out in either order;
 * - skew: with `trace_clock=local` (the ftrace default) each CPU reads its own clock, which is not
 *   synchronised with the others, so records of different CPUs can be out of order by a few
 *   microseconds.
 * A record is due once a record more than `skew` later has been read (or the input ended): every
 * record that may have happened before it is then in the window. The window itself never
 * reorders: route.ts moves a later record forward only when the kernel's own report says it
 * happened first (an unmap's unmapped_size covers a map printed after it; a map lands on a range
 * an unmap printed after it frees). Records without a timestamp in seconds are never reordered.
 */
import type { TraceRecord } from './parse.js';

export interface Held {
  rec: TraceRecord;
  /** Line number in the source: the record's identity. */
  line: number;
  /** Arrival order (set by the window). */
  seq?: number;
  /** Decided (route.ts), possibly ahead of its turn. */
  decided?: boolean;
}

export class Window {
  private held: Held[] = [];
  /** Index of the first held record (records before it were taken). */
  private head = 0;
  private latest: bigint | undefined;
  private arrivals = 0;

  constructor(private readonly skewNs: bigint) {}

  get size(): number {
    return this.held.length - this.head;
  }

  push(h: Held): void {
    const t = h.rec.timestampNs;
    if (t !== undefined && (this.latest === undefined || t > this.latest)) this.latest = t;
    h.seq = this.arrivals++;
    this.held.push(h);
  }

  /**
   * The first held record, when it is due: every record that may have happened before it has been
   * read. With `all` (end of input, or a record without time next), any first record.
   */
  due(all: boolean): Held | undefined {
    const h = this.held[this.head];
    if (h === undefined) return undefined;
    if (all) return h;
    const t = h.rec.timestampNs;
    if (t === undefined || this.latest === undefined) return h;
    return this.latest > t + this.skewNs ? h : undefined;
  }

  /** The held records printed after `h` (held or just taken) that are within the window of it. */
  *after(h: Held): IterableIterator<Held> {
    const t = h.rec.timestampNs;
    if (t === undefined) return;
    const seq = h.seq!;
    for (let i = this.head; i < this.held.length; i++) {
      const x = this.held[i]!;
      if (x.seq! <= seq) continue;
      const xt = x.rec.timestampNs;
      if (xt === undefined || xt > t + this.skewNs) return;
      yield x;
    }
  }

  /** Every held record printed after `h`, however late (for scatter-gather lists, route.ts). */
  *following(h: Held): IterableIterator<Held> {
    const seq = h.seq!;
    for (let i = this.head; i < this.held.length; i++) {
      const x = this.held[i]!;
      if (x.seq! > seq) yield x;
    }
  }

  /** The latest timestamp read so far. */
  get latestNs(): bigint | undefined {
    return this.latest;
  }

  /** Removes a held record (the first, or a later one moved forward). */
  take(h: Held): void {
    if (this.held[this.head] === h) {
      this.head++;
      if (this.head > 1024 && this.head * 2 > this.held.length) {
        this.held = this.held.slice(this.head);
        this.head = 0;
      }
      return;
    }
    const i = this.held.indexOf(h, this.head);
    if (i >= 0) this.held.splice(i, 1);
  }
}
