/**
 * Byte ranges [start, end) of IOVA space for the trace generator's oracle: normalising,
 * subtracting, and the depth union (in how many domains each byte is mapped). Written here, not
 * taken from src/core, so that the oracle does not share code with what it checks.
 */

export interface ByteRange {
  start: bigint;
  end: bigint;
}

/** A piece of the depth union: every byte of [start, end) is mapped in `depth` domains. */
export interface DepthRange extends ByteRange {
  depth: number;
}

/** Sorted by start, overlapping and touching ranges merged, empty ones dropped. */
export function normalize(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = ranges.filter((r) => r.end > r.start).sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r.start <= last.end) {
      if (r.end > last.end) last.end = r.end;
    } else out.push({ start: r.start, end: r.end });
  }
  return out;
}

/** a minus b; both normalized; the result is normalized. */
export function subtract(a: readonly ByteRange[], b: readonly ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let j = 0;
  for (const r of a) {
    let cur = r.start;
    while (j < b.length && b[j]!.end <= cur) j++;
    let k = j;
    while (k < b.length && b[k]!.start < r.end) {
      const cut = b[k]!;
      if (cut.start > cur) out.push({ start: cur, end: cut.start });
      if (cut.end > cur) cur = cut.end;
      k++;
    }
    if (cur < r.end) out.push({ start: cur, end: r.end });
  }
  return out;
}

/** a ∩ b; both normalized; the result is normalized. */
export function intersect(a: readonly ByteRange[], b: readonly ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const s = x.start > y.start ? x.start : y.start;
    const e = x.end < y.end ? x.end : y.end;
    if (s < e) out.push({ start: s, end: e });
    if (x.end < y.end) i++;
    else j++;
  }
  return out;
}

/** Total bytes of normalized ranges. */
export function totalBytes(ranges: readonly ByteRange[]): bigint {
  let n = 0n;
  for (const r of ranges) n += r.end - r.start;
  return n;
}

/**
 * The depth union of several domains' live ranges (each list normalized: within one domain no
 * byte is mapped twice). Sorted, non-overlapping pieces with depth >= 1; neighbouring pieces of
 * the same depth are merged, so the result is canonical and can be compared with deepEqual.
 */
export function depthUnion(perDomain: Iterable<readonly ByteRange[]>): DepthRange[] {
  const deltas = new Map<bigint, number>();
  for (const list of perDomain) {
    for (const r of list) {
      deltas.set(r.start, (deltas.get(r.start) ?? 0) + 1);
      deltas.set(r.end, (deltas.get(r.end) ?? 0) - 1);
    }
  }
  const points = [...deltas.keys()].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  const out: DepthRange[] = [];
  let depth = 0;
  for (let i = 0; i < points.length; i++) {
    const p = points[i]!;
    depth += deltas.get(p)!;
    if (depth < 0) throw new Error(`depthUnion: negative depth at 0x${p.toString(16)}`);
    const next = points[i + 1];
    if (depth === 0 || next === undefined) continue;
    const last = out[out.length - 1];
    if (last !== undefined && last.end === p && last.depth === depth) last.end = next;
    else out.push({ start: p, end: next, depth });
  }
  return out;
}

/** `0x…` for messages. */
export function hx(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}
