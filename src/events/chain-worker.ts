/**
 * The hash chain walked on a worker thread (chain-check.ts starts it): a read-only connection to
 * the file, `verifyChain`, the result posted back. The shared flag says when it started and when
 * it answered, so that the starting thread can wait without its event loop; the answer is posted
 * whatever happens, a failure included (the starting thread then walks the chain itself).
 */
import { workerData } from 'node:worker_threads';
import type { ChainWorkerData, ChainWorkerMessage } from './chain-check.js';

const { path, flag, port } = workerData as ChainWorkerData;
const state = new Int32Array(flag);
Atomics.store(state, 0, 1);
let answer: ChainWorkerMessage;
try {
  // Loaded here, not imported above: a module that fails to load is an answer too.
  const { default: Database } = await import('better-sqlite3');
  const { verifyChain } = await import('./chain.js');
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 });
  try {
    answer = { result: verifyChain(db) };
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
