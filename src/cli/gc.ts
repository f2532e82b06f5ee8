/**
 * A full garbage collection on demand, for long streaming jobs (imports, rebuilds): their live
 * data is small, but V8 lets the heap grow by hundreds of megabytes before it collects on its own.
 * Collecting every few hundred thousand records keeps the process's memory flat.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

export function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

/** How far past the live data an import lets the heap grow, in percent: IOMMU_LEDGER_HEAP_GROWTH (0: V8's own factor). */
const HEAP_GROWTH = Number(process.env.IOMMU_LEDGER_HEAP_GROWTH ?? 100);

/**
 * Caps how far V8 lets the heap grow past what a collection leaves live: to twice it
 * (--heap-growing-percent=100; V8 otherwise picks a factor of up to 4 from its own measures of
 * speed). The import calls it: the 1M-line bench import then peaked at 238-245 MB instead of
 * 256-259 MB, with the same time in the collector. The ledger's batched appends allocate more per
 * event, and lost ~8% of their speed to it (their memory is well within bounds without it), so
 * they do not; a cap of 20% cost the import a quarter of its speed (docs/architecture.md,
 * "Import memory").
 */
export function capHeapGrowth(): void {
  if (Number.isInteger(HEAP_GROWTH) && HEAP_GROWTH > 0) setFlagsFromString(`--heap-growing-percent=${HEAP_GROWTH}`);
}
