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
