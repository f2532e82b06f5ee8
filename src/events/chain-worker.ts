/**
 * The hash chain walked on a worker thread (chain-check.ts starts it): a read-only connection to
 * the file, `verifyChain` (or `verifyChainFrom` a position: the second half of a split `verify`),
 * the result posted back. The shared flag says when it started, how far it got and when it
 * answered, so that the starting thread can wait without its event loop; the answer is posted
 * whatever happens, a failure included (the starting thread then walks the chain itself).
 */
import { workerData } from 'node:worker_threads';
import type { ChainWorkerData, ChainWorkerMessage } from './chain-check.js';

const { path, flag, port, from } = workerData as ChainWorkerData;
const state = new Int32Array(flag);
Atomics.store(state, 0, 1);
let answer: ChainWorkerMessage;
try {
  // Loaded here, not imported above: a module that fails to load is an answer too.
  const { default: Database } = await import('better-sqlite3');
  const { verifyChain, verifyChainFrom } = await import('./chain.js');
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 });
  // The events walked so far, for the starting thread's progress.
  const progress = (n: number) => Atomics.store(state, 1, n);
  try {
    const result = from === undefined ? verifyChain(db, progress) : verifyChainFrom(db, from, progress);
    answer = result ? { result } : { error: `no event before position ${from} to start from` };
  } finally {
    db.close();
  }
} catch (e) {
  answer = { error: e instanceof Error ? e.message : String(e) };
}
port.postMessage(answer);
port.close();
Atomics.store(state, 0, 2);
Atomics.notify(state, 0);
