/**
 * Shared pieces of a domain's decision state (projections/domain-state.ts): who asked for each
 * live map is kept once per caller and site, not once per map.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { askerOf } from '../../src/projections/domain-state.js';

describe('askerOf', () => {
  it('gives one object per caller and site, whatever strings carry the names, and distinct pairs distinct objects', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('vfio', 'iommu-dma', 'qemu-system-x86', ''), fc.constantFrom('', 'site:1', 'vfio_dma_do_unmap+0x1c')), {
          minLength: 1,
          maxLength: 30,
        }),
        (pairs) => {
          const seen = new Map<string, ReturnType<typeof askerOf>>();
          for (const [caller, site] of pairs) {
            // A name sliced out of a longer string (as a parsed trace line gives it) is the same name.
            const a = askerOf(` ${caller} `.slice(1, -1), `[${site}]`.slice(1, -1));
            expect(a).toEqual({ caller, site });
            const key = JSON.stringify([caller, site]);
            const before = seen.get(key);
            if (before !== undefined) expect(a).toBe(before);
            seen.set(key, a);
          }
          expect(new Set(seen.values()).size).toBe(seen.size);
        },
      ),
    );
  });
});
