/** `profiles`: the built-in hardware profiles, with the kernel releases each behaviour holds for. */
import { formatSize } from '../../core/address.js';
import { ALL_PROFILES, describeKernels, pageSizes } from '../../core/profile.js';
import { table } from './format.js';

export function profilesJson(): unknown {
  return ALL_PROFILES.map((p) => ({ ...p, pageSizes: pageSizes(p.pgsizeBitmap).map(formatSize), releases: describeKernels(p.kernels) }));
}

export function profilesText(): string {
  return (
    table(
      ['PROFILE', 'PAGE SIZES', 'IOVA BITS', 'UNMAP', 'RELEASES', 'FORMAT', 'KERNEL'],
      ALL_PROFILES.map((p) => {
        const sizes = pageSizes(p.pgsizeBitmap).map(formatSize);
        return [
          p.name,
          sizes.length > 6 ? `${sizes[0]}..${sizes[sizes.length - 1]} (${sizes.length} sizes)` : sizes.join('|'),
          String(p.iovaBits),
          p.semantics,
          describeKernels(p.kernels),
          p.format.name,
          p.kernelRef,
        ];
      }),
    ) +
    '\n' +
    "A profile's behaviour for a kernel: --profile NAME@RELEASE (arm-lpae-4k@6.15 is arm-lpae-4k@6.13), or import/replay --kernel RELEASE.\n" +
    'Releases: docs/kernel-facts.md § 6c (ranges not pinned to a tag are open).\n'
  );
}
