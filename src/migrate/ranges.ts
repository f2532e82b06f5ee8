/** Set algebra on sorted lists of disjoint half-open ranges (what the verification compares). */
import { coalesceRanges, type Range } from '../core/address.js';
import type { IntervalSet } from '../core/intervals.js';

export type Ranges = Range[];

/** Sorted, merged. */
export function norm(rs: readonly Range[]): Ranges {
  return coalesceRanges([...rs].filter((r) => r.end > r.start).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0)));
}

export function intersect(a: Ranges, b: Ranges): Ranges {
  const out: Range[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const s = a[i]!.start > b[j]!.start ? a[i]!.start : b[j]!.start;
    const e = a[i]!.end < b[j]!.end ? a[i]!.end : b[j]!.end;
    if (s < e) out.push({ start: s, end: e });
    if (a[i]!.end < b[j]!.end) i++;
    else j++;
  }
  return out;
}

export function subtract(a: Ranges, b: Ranges): Ranges {
  const out: Range[] = [];
  let j = 0;
  for (const r of a) {
    let cur = r.start;
    while (j < b.length && b[j]!.end <= cur) j++;
    let k = j;
    while (k < b.length && b[k]!.start < r.end) {
      if (b[k]!.start > cur) out.push({ start: cur, end: b[k]!.start });
      if (b[k]!.end > cur) cur = b[k]!.end;
      k++;
    }
    if (cur < r.end) out.push({ start: cur, end: r.end });
  }
  return out;
}

export function union(a: Ranges, b: Ranges): Ranges {
  return norm([...a, ...b]);
}

export function bytes(a: Ranges): bigint {
  return a.reduce((n, r) => n + (r.end - r.start), 0n);
}

/** The parts of an interval set inside the ranges `within`. */
export function within(set: IntervalSet | undefined, rs: Ranges): Ranges {
  if (!set) return [];
  const out: Range[] = [];
  for (const r of rs) {
    for (const iv of set.overlapping(r.start, r.end)) {
      out.push({ start: iv.start > r.start ? iv.start : r.start, end: iv.end < r.end ? iv.end : r.end });
    }
  }
  return norm(out);
}
