/**
 * How long a writer waits for another process's write lock before giving up (SQLite's busy
 * timeout): 10 s, or IOMMU_LEDGER_BUSY_TIMEOUT milliseconds. No dependencies: the command line
 * names it in its message without loading SQLite.
 */
export function busyTimeoutMs(): number {
  const v = Number(process.env.IOMMU_LEDGER_BUSY_TIMEOUT);
  return Number.isInteger(v) && v >= 0 ? v : 10_000;
}
