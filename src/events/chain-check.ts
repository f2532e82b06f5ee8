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
import { ChainWalk, verifyChain, walkLinks, type VerifyResult } from './chain.js';
import type { DB } from './db.js';

/**
 * What the worker is given: the file, the position to walk from (undefined: the first event), a
 * shared flag (1 started, 2 answered; then the events walked so far) and the port to answer on.
 */
export interface ChainWorkerData {
  path: string;
  from?: number | undefined;
  flag: SharedArrayBuffer;
  port: MessagePort;
}

export type ChainWorkerMessage = { result: VerifyResult } | { error: string };

/** Starts the worker's module with this data (the port is transferred). */
export type StartChainWorker = (data: ChainWorkerData) => Worker;

/**
 * The worker's young generation, capped: its garbage is short-lived (a page of rows at a time),
 * and V8's default lets it grow to ~50 MB before collecting (a worker then cost a rebuild ~67 MB
 * of RSS, ~40 MB with the cap, for the same time).
 */
export const CHAIN_WORKER_LIMITS = { maxYoungGenerationSizeMb: 4 };

/** A worker from the module at `url`. */
export function chainWorkerAt(url: URL): StartChainWorker {
  return (data) => new Worker(url, { workerData: data, transferList: [data.port], resourceLimits: CHAIN_WORKER_LIMITS });
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

/**
 * How long a worker may show no sign of life (not started, or no more events walked: it tells
 * every 65,536, a fraction of a second's work) before the caller gives up on it and walks the
 * chain itself. A worker that died (its failure is told as an event, which a thread blocked in
 * `wait` never sees) cannot hold the caller longer than this.
 */
const STALL_MS = 30_000;

export class ParallelChainCheck {
  private answer: ChainWorkerMessage | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    private readonly flag: Int32Array,
  ) {}

  /**
   * A worker walking the chain of the file at `path` (from position `from`, the link before it
   * taken as stored; default the first), or undefined when none can be started.
   */
  static start(path: string, from?: number): ParallelChainCheck | undefined {
    if (starter === undefined || path === '' || path === ':memory:' || !existsSync(path)) return undefined;
    const { port1, port2 } = new MessageChannel();
    const flag = new SharedArrayBuffer(8);
    let worker: Worker;
    try {
      worker = starter({ path, from, flag, port: port2 });
    } catch {
      port1.close();
      return undefined;
    }
    // A failure to start is told as an event, which a thread blocked in wait() never sees: the
    // stall limit covers it. The event is taken here, so it is not an uncaught error.
    worker.on('error', () => {});
    worker.unref();
    return new ParallelChainCheck(worker, port1, new Int32Array(flag));
  }

  /** The worker's result if it has answered; undefined while it walks, or when it failed. */
  poll(): VerifyResult | undefined {
    if (Atomics.load(this.flag, 0) !== 2) return undefined;
    return this.take();
  }

  /** Blocks until the worker answers: its result, or undefined when it failed, or stalled for `stallMs`. */
  wait(stallMs = STALL_MS): VerifyResult | undefined {
    let seen = -1;
    let since = Date.now();
    for (;;) {
      const s = Atomics.load(this.flag, 0);
      if (s === 2) return this.take();
      const life = s + 2 * Atomics.load(this.flag, 1);
      if (life !== seen) {
        seen = life;
        since = Date.now();
      } else if (Date.now() - since > stallMs) return undefined;
      Atomics.wait(this.flag, 0, s, 100);
    }
  }

  /** The events the worker has walked so far (told every 65,536). */
  get walked(): number {
    return Atomics.load(this.flag, 1);
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

/** From this many events on, `verify` walks the second half of the log on a worker thread. */
export const SPLIT_VERIFY_FROM = 65536;

/**
 * `verify` on two threads: a worker walks the links after position `mid` while this thread walks
 * the others up to it. Each link needs only the stored hash before it, so the halves can be walked
 * apart; the first break is the first half's, else the second's, and the result is the one
 * `verifyChain` gives. When the worker does not answer, or the first half does not end at `mid`
 * (rows missing there), this thread walks on past it.
 */
export function verifyInTwo(db: DB, path: string, mid: number, onProgress?: (done: number) => void): VerifyResult {
  const check = ParallelChainCheck.start(path, mid + 1);
  if (check === undefined) return verifyChain(db, onProgress);
  try {
    const walk = new ChainWalk();
    const bad = walkLinks(db, walk, { through: mid, onProgress: onProgress && ((n) => onProgress(n + check.walked)) });
    if (bad) return bad;
    const second = walk.expected === mid + 1 ? check.wait() : undefined;
    if (second !== undefined && !second.ok) return { ...second, events: walk.events + second.events };
    if (second !== undefined) {
      walk.events += second.events;
      walk.prev = second.head!;
      return walk.intact();
    }
    return walkLinks(db, walk, { after: mid, onProgress }) ?? walk.intact();
  } finally {
    check.stop();
  }
}
