/**
 * RecentRemovals (src/projections/removals.ts) against the scan it replaced: the latest of the
 * ends held whose run covers the page, for runs of any length on both sides of 2^53.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecentRemovals } from '../../src/projections/removals.js';

const P = 4096n;
const BASES = [0n, (1n << 53n) - 64n * P, (1n << 64n) - 1024n * P];

describe('RecentRemovals', () => {
  it('finds the latest removal of a page as a scan of every end would', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ base: fc.nat({ max: 2 }), first: fc.nat({ max: 600 }), pages: fc.constantFrom(1, 1, 2, 16, 512) }), {
          maxLength: 80,
          size: 'max',
        }),
        fc.array(fc.record({ base: fc.nat({ max: 2 }), page: fc.nat({ max: 620 }), offset: fc.constantFrom(0n, 7n, P - 1n) }), {
          minLength: 1,
          maxLength: 30,
        }),
        fc.boolean(),
        (ends, probes, clearHalfway) => {
          const r = new RecentRemovals();
          let held: Array<{ start: bigint; end: bigint; to: number }> = [];
          // Asked after every 7th end and at the end: the look-up sees every end added before it.
          const check = () => {
            expect(r.size).toBe(held.length);
            const at = probes.map((p) => BASES[p.base]! + BigInt(p.page) * P + p.offset);
            for (const h of held) at.push(h.start - 1n, h.start, h.end - 1n, h.end);
            for (const iova of at) {
              let want: number | undefined;
              for (const h of held) if (h.start <= iova && h.end > iova) want = h.to;
              expect(r.lastRemovalOf(iova)).toBe(want);
            }
          };
          ends.forEach((e, i) => {
            if (clearHalfway && i === Math.floor(ends.length / 2)) {
              r.clear();
              held = [];
            }
            const start = BASES[e.base]! + BigInt(e.first) * P;
            const end = start + BigInt(e.pages) * P;
            r.add(start, end, 10 + i);
            held.push({ start, end, to: 10 + i });
            if (i % 7 === 6) check();
          });
          check();
        },
      ),
      { numRuns: 300 },
    );
  });
});
