/** IOMMU_READ / IOMMU_WRITE / ... as in include/linux/iommu.h. */
export const PROT = { READ: 1, WRITE: 2, CACHE: 4, NOEXEC: 8, MMIO: 16, PRIV: 32 } as const;
