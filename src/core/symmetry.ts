/**
 * How an unmap relates to the maps alive when it is issued (the 2011 rule: unmap exactly what
 * you mapped), and what it would do under each unmap behaviour. Pure: reads a Domain, never
 * changes it (the what-ifs run on O(1) copy-on-write clones).
 */
import type { Domain, MapOrigin } from './domain.js';
import type { Semantics } from './profile.js';

/**
 * - exact: the request is one whole map;
 * - spans: it covers several whole maps (and maybe gaps between them), like KVM's unmap of the
 *   whole address space at teardown;
 * - cuts: it lies inside one map without being all of it;
 * - straddles: it crosses the edge of at least one map (covers part of it and something else);
 * - misses: nothing is mapped in it.
 */
export type SymmetryClass = 'exact' | 'spans' | 'cuts' | 'straddles' | 'misses';

export const SYMMETRIC: ReadonlySet<SymmetryClass> = new Set(['exact', 'spans']);

/** What one unmap does under one behaviour, on the pages live at that moment. */
export interface BehaviourEffect {
  /** Bytes removed outside the request. */
  over: bigint;
  /** Bytes of the request still mapped afterwards. */
  left: bigint;
  /** Refused (strict) or failed: the errno. */
  errno?: string;
}

export interface UnmapAnalysis {
  class: SymmetryClass;
  /** The maps (by their map event) that the request touches, in IOVA order. */
  maps: MapOrigin[];
  /** Bytes of the touched maps outside the request (what a symmetric caller keeps). */
  keptBytes: bigint;
  /** The largest page now backing the touched part. */
  largestPage: bigint;
  /**
   * The cut edges (request bounds strictly inside a touched map) are harmless for pages up to
   * this size and over-unmap under `legacy` with any larger page; 0 when nothing is cut.
   */
  safePage: bigint;
  /**
   * Bytes of the request still mapped after the first hole from its start: the legacy loop and
   * io-pgtable-arm's split both stop at a hole and leave them mapped.
   */
  afterHole: bigint;
}

/**
 * The behaviours the caller analysis compares every asymmetric unmap under (its table has a
 * column per behaviour, schema 2): the three unmap designs of docs/semantics.md.
 */
export type AnalysedBehaviour = 'legacy' | 'split' | 'strict';
export const BEHAVIOURS: readonly AnalysedBehaviour[] = ['legacy', 'split', 'strict'];

/** Classifies an unmap of [iova, iova+size) against the maps live in `d`. */
export function classifyUnmap(d: Domain, iova: bigint, size: bigint): UnmapAnalysis {
  const start = iova;
  const end = iova + size;
  const maps: MapOrigin[] = [];
  // Distinct origins, in order of first appearance: a linear search while there are few.
  let seen: Set<MapOrigin> | undefined;
  let largestPage = 0n;
  let cursor = start;
  let afterHole = 0n;
  for (const r of d.runsIn(start, end)) {
    if (r.pageSize > largestPage) largestPage = r.pageSize;
    const re = r.iova + r.pageSize * r.count;
    if (cursor < 0n || r.iova > cursor) {
      cursor = -1n; // past a hole: what follows stays mapped
      afterHole += (re < end ? re : end) - (r.iova > start ? r.iova : start);
    } else if (re > cursor) cursor = re;
    const o = r.origin;
    if (seen !== undefined) {
      if (seen.has(o)) continue;
      seen.add(o);
    } else {
      if (maps.includes(o)) continue;
      if (maps.length === 16) seen = new Set(maps).add(o);
    }
    maps.push(o);
  }
  let cls: SymmetryClass;
  let keptBytes = 0n;
  let safePage = 0n;
  if (maps.length === 0) cls = 'misses';
  else {
    let cut = false;
    let straddle = false;
    for (const o of maps) {
      const os = o.iova;
      const oe = o.iova + o.size;
      if (os >= start && oe <= end) continue;
      if (os <= start && oe >= end) cut = true;
      else straddle = true;
      if (os < start) keptBytes += start - os;
      if (oe > end) keptBytes += oe - end;
      if (start > os && start < oe) {
        const g = lowBit(start);
        if (safePage === 0n || g < safePage) safePage = g;
      }
      if (end > os && end < oe) {
        const g = lowBit(end);
        if (safePage === 0n || g < safePage) safePage = g;
      }
    }
    if (straddle) cls = 'straddles';
    else if (cut) cls = 'cuts';
    else cls = maps.length === 1 && maps[0]!.iova === start && maps[0]!.iova + maps[0]!.size === end ? 'exact' : 'spans';
  }
  return { class: cls, maps, keptBytes, largestPage, safePage, afterHole };
}

/** The unmap tried under one behaviour on a copy of `d` (which is left as it was). */
export function tryUnmap(d: Domain, iova: bigint, size: bigint, semantics: Semantics): BehaviourEffect {
  const r = d.clone().unmap({ iova, size }, semantics);
  const e: BehaviourEffect = {
    over: r.collateral.reduce((a, c) => a + (c.end - c.start), 0n),
    left: r.leftMapped.reduce((a, l) => a + (l.end - l.start), 0n),
  };
  if (!r.ok && r.errno) e.errno = r.errno;
  return e;
}

/** The lowest set bit of a non-zero address (its alignment); 2^64 for 0. */
export function lowBit(x: bigint): bigint {
  return x === 0n ? 1n << 64n : x & -x;
}
