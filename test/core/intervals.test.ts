/**
 * IntervalSet (src/core/intervals.ts) against a model that keeps the owner of every page in a map:
 * after any sequence of adds and subtracts, the set's intervals, the results of each operation
 * and the overlap queries say what the model says. Addresses run on both sides of 2^53, where the
 * set's keys change kind (numbers below, bigints above: treekey.ts).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IntervalSet } from '../../src/core/intervals.js';

const P = 4096n;
const BASES = [0n, (1n << 53n) - 8n * P, (1n << 64n) - 64n * P];

type Op = { kind: 'add' | 'sub' | 'query'; base: number; first: number; pages: number };

const op = fc.record({
  kind: fc.constantFrom<'add' | 'sub' | 'query'>('add', 'add', 'sub', 'query'),
  base: fc.nat({ max: BASES.length - 1 }),
  first: fc.nat({ max: 40 }),
  pages: fc.integer({ min: 0, max: 12 }),
});

/** The model: page address -> the value of the interval covering it. */
function pagesOf(m: Map<bigint, number>, start: bigint, end: bigint): Array<[bigint, number | undefined]> {
  const out: Array<[bigint, number | undefined]> = [];
  for (let a = start; a < end; a += P) out.push([a, m.get(a)]);
  return out;
}

/** Intervals as plain triples, for comparing. */
const plain = (ivs: Iterable<{ start: bigint; end: bigint; value: number }>) => [...ivs].map((iv) => [iv.start, iv.end, iv.value] as const);

describe('IntervalSet', () => {
  it('agrees with a page-by-page model on adds, subtracts and overlap queries, across 2^53', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60, size: 'max' }), (ops: Op[]) => {
        const set = new IntervalSet();
        const model = new Map<bigint, number>();
        ops.forEach((o, i) => {
          const start = BASES[o.base]! + BigInt(o.first) * P;
          const end = start + BigInt(o.pages) * P;
          const before = pagesOf(model, start, end);
          if (o.kind === 'add') {
            const added = set.add(start, end, i);
            // What was added is exactly the pages that were free, with the new value.
            const free = before.filter(([, v]) => v === undefined).map(([a]) => a);
            expect(added.flatMap((iv) => pagesOf(new Map(), iv.start, iv.end).map(([a]) => a))).toEqual(free);
            for (const iv of added) expect(iv.value).toBe(i);
            for (const a of free) model.set(a, i);
          } else if (o.kind === 'sub') {
            const { removed, kept } = set.subtract(start, end);
            // Removed: every interval that touched the range; kept: their parts outside it.
            // (An empty range shares no byte with any interval: it removes nothing.)
            for (const iv of removed) expect((iv.start > start ? iv.start : start) < (iv.end < end ? iv.end : end)).toBe(true);
            const outside = removed.flatMap((iv) => pagesOf(model, iv.start, iv.end)).filter(([a]) => a < start || a >= end);
            expect(kept.flatMap((iv) => pagesOf(new Map(), iv.start, iv.end).map(([a]) => [a, iv.value]))).toEqual(outside);
            for (let a = start; a < end; a += P) model.delete(a);
          } else {
            const hits = set.overlapping(start, end);
            expect(set.intersects(start, end)).toBe(hits.length > 0);
            expect(set.covers(start, end)).toBe(before.every(([, v]) => v !== undefined));
            const covered = before.filter(([, v]) => v !== undefined);
            expect(
              hits
                .flatMap((iv) => pagesOf(new Map(), iv.start, iv.end).map(([a]) => [a, iv.value]))
                .filter(([a]) => (a as bigint) >= start && (a as bigint) < end),
            ).toEqual(covered);
          }
        });
        // The set as a whole: disjoint, ordered, and page for page the model.
        const all = plain(set);
        for (let k = 1; k < all.length; k++) expect(all[k - 1]![1] <= all[k]![0]).toBe(true);
        const pages = all.flatMap(([s, e, v]) => pagesOf(new Map(), s, e).map(([a]) => [a, v] as const));
        expect(pages).toEqual([...model].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
        expect(set.size).toBe(all.length);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps a tag with each interval and loads saved intervals as they were', () => {
    const set = new IntervalSet();
    const [a] = set.add(0x1000n, 0x3000n, 7);
    a!.tag = 42;
    const copy = new IntervalSet();
    for (const iv of set) copy.load(iv.start, iv.end, iv.value, iv.tag);
    expect([...copy].map((iv) => [iv.start, iv.end, iv.value, iv.tag])).toEqual([[0x1000n, 0x3000n, 7, 42]]);
    // Pieces made by a subtract are new intervals: their tag is -1 until their owner sets it.
    const { kept } = copy.subtract(0x2000n, 0x2001n);
    expect(kept.map((iv) => [iv.start, iv.end, iv.tag])).toEqual([
      [0x1000n, 0x2000n, -1],
      [0x2001n, 0x3000n, -1],
    ]);
  });

  it('holds many intervals (its columns grow and reuse freed slots), with their ends above 2^53 too', () => {
    const set = new IntervalSet();
    const base = (1n << 64n) - 4096n * P;
    // Every other page, then every page's second half taken out of the first 100 of them.
    for (let i = 0; i < 1000; i++)
      for (const b of [0n, base]) set.add(b + BigInt(2 * i) * P, b + BigInt(2 * i + 1) * P, i).forEach((iv) => (iv.tag = 5000 + i));
    for (let i = 0; i < 100; i++) set.subtract(BigInt(2 * i) * P + P / 2n, BigInt(2 * i + 1) * P).kept.forEach((iv) => (iv.tag = 9000 + i));
    const all = [...set];
    expect(all).toHaveLength(2000);
    all.forEach((iv, k) => {
      const i = k % 1000;
      const b = k < 1000 ? 0n : base;
      expect([iv.start, iv.end, iv.value, iv.tag]).toEqual([
        b + BigInt(2 * i) * P,
        b + BigInt(2 * i) * P + (k < 100 ? P / 2n : P),
        i,
        k < 100 ? 9000 + i : 5000 + i,
      ]);
    });
  });
});
