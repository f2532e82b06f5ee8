/**
 * The tests run the TypeScript sources, where the worker that walks the hash chain during a
 * rebuild (src/events/chain-check.ts) has no compiled module beside it: it is started from its
 * source here, through tsx's loader (a dependency already), so the tests exercise the same
 * worker the compiled command starts (vitest `setupFiles`).
 */
import { Worker } from 'node:worker_threads';
import { CHAIN_WORKER_LIMITS, setChainWorker } from '../../src/events/chain-check.js';

const source = new URL('../../src/events/chain-worker.ts', import.meta.url).href;
const boot = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); })`;

setChainWorker((data) => new Worker(boot, { eval: true, workerData: data, transferList: [data.port], resourceLimits: CHAIN_WORKER_LIMITS }));
