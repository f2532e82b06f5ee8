/** Coverage (src/import/coverage.ts): merged ranges of what a trace touched, against a per-byte model. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Coverage } from '../../src/import/coverage.js';

describe('Coverage', () => {
  it('touches() and the merged ranges agree with a per-byte model after any adds', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(200), fc.nat(40)), { maxLength: 40, size: 'max' }),
        fc.array(fc.tuple(fc.nat(240), fc.nat(20)), { maxLength: 20, size: 'max' }),
        (adds, probes) => {
          const c = new Coverage();
          const bytes = new Set<number>();
          for (const [s, n] of adds) {
            c.add(BigInt(s), BigInt(s + n));
            for (let b = s; b < s + n; b++) bytes.add(b);
          }
          for (const [s, n] of probes) {
            let any = false;
            for (let b = s; b < s + n; b++) if (bytes.has(b)) any = true;
            expect(c.touches(BigInt(s), BigInt(s + n)), `[${s}, ${s + n})`).toBe(any);
          }
          // Ranges are disjoint, sorted, not adjacent (merged), and cover exactly the bytes.
          const spans = [...c];
          let covered = 0;
          for (let i = 0; i < spans.length; i++) {
            const sp = spans[i]!;
            expect(sp.end > sp.start).toBe(true);
            if (i > 0) expect(sp.start > spans[i - 1]!.end).toBe(true);
            for (let b = Number(sp.start); b < Number(sp.end); b++) expect(bytes.has(b)).toBe(true);
            covered += Number(sp.end - sp.start);
          }
          expect(covered).toBe(bytes.size);
        },
      ),
      { numRuns: 300 },
    );
  });
});
