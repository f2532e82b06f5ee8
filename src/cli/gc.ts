/**
 * A full garbage collection on demand, for long streaming jobs (imports, rebuilds): their live
 * data is small, but V8 lets the heap grow by hundreds of megabytes before it collects on its own.
 * Collecting every few hundred thousand records keeps the process's memory flat.
 *
 * The first call also caps how far V8 lets the heap grow past what a collection leaves live: to
 * twice it (--heap-growing-percent=100; V8 otherwise picks a factor of up to 4 from its own
 * measures of speed). The 1M-line bench import then peaked at 238-245 MB instead of 256-259 MB,
 * with the same time in the collector; a cap of 20% cost a quarter of the import's speed
 * (docs/architecture.md, "Import memory").
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** How far past the live data the heap may grow, in percent: IOMMU_LEDGER_HEAP_GROWTH (0: V8's own factor). */
const HEAP_GROWTH = Number(process.env.IOMMU_LEDGER_HEAP_GROWTH ?? 100);

let gc: (() => void) | undefined;

export function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    if (Number.isInteger(HEAP_GROWTH) && HEAP_GROWTH > 0) setFlagsFromString(`--heap-growing-percent=${HEAP_GROWTH}`);
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}
