/** `profiles`: the built-in hardware profiles. */
import { formatSize } from '../../core/address.js';
import { BUILTIN_PROFILES, pageSizes } from '../../core/profile.js';
import { table } from './format.js';

export function profilesJson(): unknown {
  return BUILTIN_PROFILES.map((p) => ({ ...p, pageSizes: pageSizes(p.pgsizeBitmap).map(formatSize) }));
}

export function profilesText(): string {
  return table(
    ['PROFILE', 'PAGE SIZES', 'IOVA BITS', 'UNMAP', 'FORMAT', 'KERNEL'],
    BUILTIN_PROFILES.map((p) => {
      const sizes = pageSizes(p.pgsizeBitmap).map(formatSize);
      return [
        p.name,
        sizes.length > 6 ? `${sizes[0]}..${sizes[sizes.length - 1]} (${sizes.length} sizes)` : sizes.join('|'),
        String(p.iovaBits),
        p.semantics,
        p.format.name,
        p.kernelRef,
      ];
    }),
  );
}
