/**
 * The hash chain checked on another thread while this one reads and folds the events (rebuild):
 * a worker (chain-worker.ts) walks the chain through a read-only connection of its own, as
 * `verify` does, while the fold reads the log without the chain's columns. On two cores the walk
 * costs the fold nothing (it is ~3 µs of the ~20 µs a rebuild spends per event:
 * docs/architecture.md, "The hash chain on a second thread").
 *
 * Start it while holding the write lock: no other connection can then commit before the caller
 * does, and the caller's own writes do not touch the log, so the worker reads the very events the
 * caller's transaction reads. Where no worker can be started (no module for it, an in-memory
 * file), `start` gives undefined; a worker that fails answers undefined: the caller then walks the
 * chain itself, with the same result.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { VerifyResult } from './chain.js';

/** What the worker is given: the file, a shared flag (1 started, 2 answered) and the port to answer on. */
export interface ChainWorkerData {
  path: string;
  flag: SharedArrayBuffer;
  port: MessagePort;
}

export type ChainWorkerMessage = { result: VerifyResult } | { error: string };

/** Starts the worker's module with this data (the port is transferred). */
export type StartChainWorker = (data: ChainWorkerData) => Worker;

/** A worker from the module at `url`. */
export function chainWorkerAt(url: URL): StartChainWorker {
  return (data) => new Worker(url, { workerData: data, transferList: [data.port] });
}

/** The worker's module beside this one, compiled (tsc's layout): undefined when it is not there. */
function besideThisModule(): StartChainWorker | undefined {
  const url = new URL('./chain-worker.js', import.meta.url);
  return url.protocol === 'file:' && existsSync(fileURLToPath(url)) ? chainWorkerAt(url) : undefined;
}

let starter: StartChainWorker | undefined = besideThisModule();

/**
 * Where the worker's module is when it is not beside this one: the bundle's entry names its own
 * copy; the tests start the TypeScript source. Undefined: no worker (the chain is walked inline).
 * Returns what was set before.
 */
export function setChainWorker(start: StartChainWorker | undefined): StartChainWorker | undefined {
  const was = starter;
  starter = start;
  return was;
}

/** How long a worker may take to start before the caller gives up on it (it walks the chain itself). */
const START_TIMEOUT_MS = 30_000;

export class ParallelChainCheck {
  private answer: ChainWorkerMessage | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    private readonly flag: Int32Array,
  ) {}

  /** A worker walking the chain of the file at `path`, or undefined when none can be started. */
  static start(path: string): ParallelChainCheck | undefined {
    if (starter === undefined || path === '' || path === ':memory:' || !existsSync(path)) return undefined;
    const { port1, port2 } = new MessageChannel();
    const flag = new SharedArrayBuffer(4);
    let worker: Worker;
    try {
      worker = starter({ path, flag, port: port2 });
    } catch {
      port1.close();
      return undefined;
    }
    // A failure to start is told as an event, which a thread blocked in wait() never sees: the
    // flag's timeout covers it. The event is taken here, so it is not an uncaught error.
    worker.on('error', () => {});
    worker.unref();
    return new ParallelChainCheck(worker, port1, new Int32Array(flag));
  }

  /** The worker's result if it has answered; undefined while it walks, or when it failed. */
  poll(): VerifyResult | undefined {
    if (Atomics.load(this.flag, 0) !== 2) return undefined;
    return this.take();
  }

  /** Blocks until the worker answers: its result, or undefined when it failed or never started. */
  wait(): VerifyResult | undefined {
    const started = Date.now();
    for (;;) {
      const s = Atomics.load(this.flag, 0);
      if (s === 2) return this.take();
      if (s === 0 && Date.now() - started > START_TIMEOUT_MS) return undefined;
      Atomics.wait(this.flag, 0, s, 100);
    }
  }

  /** Lets the worker go (it may still be walking: a fold that failed no longer needs it). */
  stop(): void {
    this.port.close();
    void this.worker.terminate();
  }

  private take(): VerifyResult | undefined {
    this.answer ??= receiveMessageOnPort(this.port)?.message as ChainWorkerMessage | undefined;
    return this.answer !== undefined && 'result' in this.answer ? this.answer.result : undefined;
  }
}
