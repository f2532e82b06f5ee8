/**
 * What a trace says the kernel removed. The `unmap` tracepoint (include/trace/events/iommu.h,
 * emitted by __iommu_unmap() in drivers/iommu/iommu.c) prints the request and `unmapped_size`,
 * the bytes the driver calls returned. The trace is the authority for what the kernel did; the
 * profile only predicts it. When the two differ, the ledger follows the kernel (Domain
 * .unmapObserved), and this is the byte range it takes the kernel to have removed.
 *
 * - unmapped_size <= size: the loop of __iommu_unmap() starts at iova and adds each removed
 *   page to iova, so what it removed starts at iova: [iova, iova + unmapped_size). (It stopped
 *   early at a hole, or removed exactly the request.)
 * - unmapped_size > size: the driver removed a whole large page around iova (intel_iommu_unmap's
 *   "horrid API" rounding, iommu_v1_unmap_pages, iopgtable_clear_entry). Large pages are
 *   naturally aligned, so the page starts at iova rounded down to the largest power of two not
 *   above unmapped_size, as long as that range still covers the request; otherwise at iova.
 *
 * Pure: no I/O.
 */
import type { Range } from './address.js';

const TWO_64 = 1n << 64n;

/** The largest power of two that is <= x (x > 0). */
function floorPow2(x: bigint): bigint {
  let p = 1n;
  while (p << 1n <= x) p <<= 1n;
  return p;
}

/** The range a kernel that reported `unmapped` for an unmap of [iova, iova+size) removed. */
export function kernelRange(iova: bigint, size: bigint, unmapped: bigint): Range {
  if (unmapped <= 0n) return { start: iova, end: iova };
  let start = iova;
  if (unmapped > size) {
    const p = floorPow2(unmapped);
    const aligned = iova - (iova % p);
    if (aligned + unmapped >= iova + size) start = aligned;
  }
  const end = start + unmapped;
  return { start, end: end > TWO_64 ? TWO_64 : end };
}
