/** The caller and call site an import stores for a kernel-log debug line (debugOrigin). */
import { describe, expect, it } from 'vitest';
import { debugOrigin } from '../../src/import/debug-origin.js';

describe('debugOrigin: caller and site from a debug line prefix', () => {
  it('a dynamic-debug prefix: the function is the caller, FILE:LINE the site', () => {
    expect(debugOrigin('drivers/iommu/iommu.c:2500: iommu:iommu_unmap:2500')).toEqual({ caller: 'iommu_unmap', site: 'drivers/iommu/iommu.c:2500' });
    // With the pr_fmt prefix after it, and the source-file flag inside it (module:function:file:line).
    expect(debugOrigin('iommu:__iommu_map:drivers/iommu/iommu.c:2461: iommu')).toEqual({ caller: '__iommu_map', site: 'drivers/iommu/iommu.c:2461' });
    // A thread id first.
    expect(debugOrigin('[1201] iommu:iommu_unmap:drivers/iommu/iommu.c:2500')).toEqual({ caller: 'iommu_unmap', site: 'drivers/iommu/iommu.c:2500' });
    // No file printed: the dynamic-debug part as printed is the site.
    expect(debugOrigin('iommu:__iommu_map:2461: iommu')).toEqual({ caller: '__iommu_map', site: 'iommu:__iommu_map:2461' });
    expect(debugOrigin('__iommu_map:2461')).toEqual({ caller: '__iommu_map', site: '__iommu_map:2461' });
    // A file and line only: the rest of the prefix is the caller.
    expect(debugOrigin('drivers/iommu/iommu.c:2500: iommu')).toEqual({ caller: 'iommu', site: 'drivers/iommu/iommu.c:2500' });
  });

  it('any other prefix is the caller as printed, without a site', () => {
    expect(debugOrigin('iommu')).toEqual({ caller: 'iommu' });
    expect(debugOrigin('omap-iommu 480bd400.mmu')).toEqual({ caller: 'omap-iommu 480bd400.mmu' });
    expect(debugOrigin('vfio-pci 0000:00:02.0')).toEqual({ caller: 'vfio-pci 0000:00:02.0' });
    expect(debugOrigin('0000:00:02.0')).toEqual({ caller: '0000:00:02.0' });
  });
});
