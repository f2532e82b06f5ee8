/**
 * The ledger: the write transactions around decide → append → project. It validates commands,
 * runs each through the core on its domain's state (domain-state.ts), appends its event
 * (events/store.ts), has the decider (decider.ts) decide what the event means for the
 * projections, and hands the registered projections (registry.ts) the decided events in batches,
 * all in the same transaction; it writes only `checkpoints` and the `streams` rows itself.
 * `rebuild()` recomputes the projections from the events alone, with the very same code.
 */
import type Database from 'better-sqlite3';
import { hex, type Range } from '../core/address.js';
import type { Domain } from '../core/domain.js';
import type { SymmetryClass } from '../core/symmetry.js';
import { customProfile } from '../core/profile-spec.js';
import { LedgerFault } from '../core/errors.js';
import { describeProfile, profileFromDescriptor, resolveProfile, type Profile, type ProfileDescriptor } from '../core/profile.js';
import type { OpenOptions } from '../events/db.js';
import { parseCommand, type Command, type DecodedData, type EventType, type Origin, type Who } from '../events/schema.js';
import { encodeMapBody, encodeUnmapBody } from '../events/encode.js';
import { derivedId, importedId } from '../events/compact.js';
import { decodeBody, type MapFields, type UnmapFields } from '../events/decode.js';
import { DomainReplay, replayMap, replayUnmap, type ReplayedDomain } from '../events/replay.js';
import { ChainWalk, verifyChain, type VerifyResult } from '../events/chain.js';
import { ParallelChainCheck } from '../events/chain-check.js';
import { ConcurrencyError, EventStore } from '../events/store.js';
import { unfitEvent } from '../events/stored.js';
import { BrokenChainError, PROJECTION_TABLES, recreateProjectionTables } from './corrupt.js';
import { toDb } from './codec.js';
import { deleteMeta } from './meta.js';
import { prepareLedgerStatements, type LedgerStatements } from './statements.js';
import { PROJECTIONS, ProjectionSet, rebuildSet, type CollateralFinding, type Projection } from './registry.js';
import { runs } from './runs.js';
import { askerOf, intern, loadDomainState, newDomainState, UNKNOWN_CALLER, type DomainState } from './domain-state.js';
import { Decider } from './decider.js';
import { registerCatchUp } from './catch-up.js';

export { UNKNOWN_CALLER };

/** The names of the registered projections (what `rebuild`'s `projections` takes), in the registry's order. */
export const PROJECTION_NAMES: readonly string[] = PROJECTIONS.map((p) => p.name);

/**
 * The projections are flushed (their gathered rows written) once the runs ended since the last
 * flush reach this many: until then the ledger finds the latest removal of a page among them too.
 */
const FLUSH_EVERY = 16384;
/** A snapshot of a domain's live runs (run_snapshots, schema 5) and intent (intent_snapshots, schema 6) every this many of its events. */
export const SNAPSHOT_EVERY = 65536;
/**
 * The registered projections (registry.ts) are handed the decided events at most this many at a
 * time. Small: a decided event holds the core's results, and items kept longer than a young-
 * generation collection get copied and promoted (1,024 made the batched bench ~15% slower,
 * almost all of it in the garbage collector).
 */
const PROJECT_EVERY = 64;

/** From this many events on, a rebuild walks the hash chain on a worker thread (`LedgerOptions.chainThreadFrom`). */
export const CHAIN_THREAD_FROM = 32768;

/** A long session or a rebuild calls `LedgerOptions.collectGarbage` every this many events. */
export const COLLECT_GARBAGE_EVERY = 65536;

export interface LedgerOptions extends OpenOptions {
  /** Snapshot cadence of the run log (tests use small values; the default suits real ledgers). */
  snapshotEvery?: number;
  /**
   * A full garbage collection (the CLI's src/cli/gc.ts), called every COLLECT_GARBAGE_EVERY events
   * appended or folded. A million-event session holds ~45 MB live, but V8 lets the heap grow to
   * four or five times that before it collects on its own; collecting as it goes keeps the
   * process's memory flat for a few per cent of time (docs/architecture.md, "Memory").
   */
  collectGarbage?: () => void;
  /** How many events between two `collectGarbage` calls (default COLLECT_GARBAGE_EVERY). */
  collectGarbageEvery?: number;
  /**
   * Deferred projections (docs/architecture.md, "Deferred projections and their catch-up"): the
   * projection tables may stay behind the log by fewer than this many events, so that a write
   * transaction of a few commands commits its events (and new domains' streams rows) only; the
   * decisions are kept in memory and written with a later transaction, by `close()` or by
   * `projectNow()`. A ledger that finds the tables behind the log (another ledger deferred them,
   * or crashed first) folds the missing events first. 0 (the default): every transaction writes
   * its projections.
   */
  deferProjections?: number;
  /**
   * From how many events a rebuild walks the hash chain on a worker thread while it folds
   * (events/chain-check.ts) instead of in its own read: default CHAIN_THREAD_FROM (starting the
   * worker costs about what walking ~15,000 events inline costs); 0: always; Infinity: never.
   */
  chainThreadFrom?: number;
}

export interface Input {
  cmd: Command;
  /** Where the command came from (file, digest, line), for imports. */
  from?: Origin;
}

export type Symmetry = SymmetryClass;

export type { CollateralFinding };

export interface Outcome {
  index: number;
  op: Command['op'];
  domain: string;
  position?: number;
  /** The id was already stored: nothing was appended. */
  duplicate?: boolean;
  ok: boolean;
  errno?: string;
  reason?: string;
  unmapped?: bigint;
  predicted?: bigint;
  symmetry?: Symmetry;
  collateral?: CollateralFinding[];
  leftMapped?: Range[];
  faultCause?: string;
}

export interface AppendOptions {
  /** Optimistic concurrency: the version each named stream must be at before this batch. */
  expectedVersions?: Record<string, number>;
}

/** A domain's decision state (domain-state.ts). */
type Ctx = DomainState;

/** What one append transaction shares among its commands. */
interface Batch {
  recordedAt: string;
}

/**
 * A command the ledger refuses (exit code 2). `index` is the command's place in its batch (from
 * 0), and the message then begins with "command N: " before the `reason`; a caller that names the
 * command itself (apply: FILE:LINE) uses the reason.
 */
export class LedgerError extends LedgerFault {
  readonly exitCode = 2;
  constructor(
    readonly reason: string,
    readonly index?: number,
  ) {
    super(index === undefined ? reason : `command ${index + 1}: ${reason}`);
    this.name = 'LedgerError';
  }
}

export class Ledger {
  readonly store: EventStore;
  readonly db: Database.Database;
  private ctxs = new Map<string, Ctx>();
  /** The decisions: what each event means beyond its pages, queued for the projections (decider.ts). */
  private d: Decider;
  private s: LedgerStatements;
  private projections: ProjectionSet;
  private readonly collectGarbage: (() => void) | undefined;
  private readonly collectEvery: number;
  private readonly deferLimit: number;
  /**
   * Whether the domains and decisions in memory start where the projection tables stand (the
   * tables' checkpoint, `projectedTo`) and run to the head: false at open and whenever what was in
   * memory is let go; the next write transaction (or look at a domain) catches up first.
   */
  private caughtUp = false;
  /** The position the projection tables are at, as this ledger last read or wrote it. */
  private projectedTo = 0;
  /** Whether the file has a checkpoint row (read by `catchUp`). */
  private checkpointKnown = false;
  /** Events decided after `projectedTo`: their projections are not written yet. */
  private unprojected = 0;
  /** The domains with events after `projectedTo` (their streams rows are written with the projections). */
  private touched = new Set<Ctx>();
  /** Events appended or folded since the last `collectGarbage`. */
  private sinceCollect = 0;
  /** LedgerOptions.chainThreadFrom. */
  private readonly chainThreadFrom: number;

  constructor(path: string, opts: LedgerOptions = {}) {
    const { snapshotEvery, collectGarbage, collectGarbageEvery, deferProjections, chainThreadFrom, ...open } = opts;
    this.chainThreadFrom = chainThreadFrom ?? CHAIN_THREAD_FROM;
    if (!(this.chainThreadFrom >= 0)) throw new RangeError(`chainThreadFrom: ${chainThreadFrom} is not a number of events`);
    this.deferLimit = deferProjections ?? 0;
    if (!Number.isInteger(this.deferLimit) || this.deferLimit < 0) {
      throw new RangeError(`deferProjections: ${deferProjections} is not a whole number of events`);
    }
    this.collectGarbage = collectGarbage;
    this.collectEvery = collectGarbageEvery ?? COLLECT_GARBAGE_EVERY;
    if (!Number.isInteger(this.collectEvery) || this.collectEvery < 1) {
      throw new RangeError(`collectGarbageEvery: ${collectGarbageEvery} is not a positive integer`);
    }
    const every = snapshotEvery ?? SNAPSHOT_EVERY;
    if (!Number.isInteger(every) || every < 1) throw new RangeError(`snapshotEvery: ${snapshotEvery} is not a positive integer`);
    this.store = new EventStore(path, open);
    this.db = this.store.db;
    this.s = prepareLedgerStatements(this.db, this.store.path);
    this.projections = new ProjectionSet(this.db, this.store.path);
    this.d = new Decider(this.s, every);
  }

  /** (Re)prepares the write path's statements (statements.ts): at open, and on the tables `rebuild` recreated. */
  private prepareStatements(): void {
    this.s = prepareLedgerStatements(this.db, this.store.path);
    this.d.s = this.s;
    this.projections = new ProjectionSet(this.db, this.store.path);
  }

  /**
   * Writes the deferred projections (if any), then closes the file; closed even when writing them
   * fails (the events are stored: the next ledger or query folds them again), and the error thrown.
   */
  close(): void {
    try {
      if (this.unprojected > 0 && this.store.db.open) this.projectNow();
    } finally {
      this.store.close();
    }
  }

  /**
   * Writes every projection up to the head, in a write transaction of its own: the deferred
   * decisions of this ledger, or, when the tables are behind the log for another reason (another
   * ledger deferred them and stopped), those of the events folded again first. Nothing (no
   * transaction) when this ledger knows the tables to be at the head it knows.
   */
  projectNow(): void {
    this.catchUp(); // a read: the transaction is needed only if something is left to write
    if (this.unprojected === 0 && this.projectedTo === this.store.lastPosition) return;
    this.session(() => {
      this.forceProjection = true;
    });
  }

  /** Set by projectNow: the transaction writes the projections however few events it holds. */
  private forceProjection = false;

  /** How far behind the log the projection tables are, as this ledger knows it (0 without deferral). */
  get unprojectedEvents(): number {
    return this.unprojected;
  }

  get lastPosition(): number {
    return this.store.lastPosition;
  }

  /** Validates raw commands (e.g. parsed JSON) and appends them as one atomic batch. */
  appendRaw(raw: unknown[], opts: AppendOptions = {}): Outcome[] {
    const inputs = raw.map((r, i) => {
      try {
        return { cmd: parseCommand(r) };
      } catch (e) {
        throw new LedgerError((e as Error).message, i);
      }
    });
    return this.append(inputs, opts);
  }

  /** Appends a batch atomically: every command is stored (with its outcome) or none is. */
  append(inputs: Input[], opts: AppendOptions = {}): Outcome[] {
    return this.session((add) => inputs.map((inp) => add(inp)), opts);
  }

  /**
   * One write transaction for a stream of commands (imports): `fn` adds commands one at a time;
   * if it throws, nothing of the session is stored.
   */
  session<T>(fn: (add: (inp: Input) => Outcome) => T, opts: AppendOptions = {}): T {
    const add = this.begin();
    try {
      return this.store.write(
        () => {
          this.catchUp();
          this.checkExpected(opts);
          const out = fn(add);
          this.finishBatch();
          return out;
        },
        () => this.moved(),
        () => this.otherWrote(),
      );
    } catch (e) {
      this.abandon();
      throw e;
    }
  }

  /** session() for producers that await between commands (streaming a file). */
  async sessionAsync<T>(fn: (add: (inp: Input) => Outcome) => Promise<T>, opts: AppendOptions = {}): Promise<T> {
    const add = this.begin();
    try {
      return await this.store.writeAsync(
        async () => {
          this.catchUp();
          this.checkExpected(opts);
          const out = await fn(add);
          this.finishBatch();
          return out;
        },
        () => this.moved(),
        () => this.otherWrote(),
      );
    } catch (e) {
      this.abandon();
      throw e;
    }
  }

  /**
   * Another writer appended since this ledger last looked: the domains are read again, from the
   * projection tables at their checkpoint, and the events after it folded again (`catchUp`).
   */
  private moved(): void {
    // `otherWrote` ran first (an append is a commit): the ids, the projections' writers and any
    // deferred decisions are already let go; only the domains remain.
    this.ctxs.clear();
    this.touched.clear();
    this.caughtUp = false;
  }

  /**
   * Another connection committed since this ledger last wrote (the store saw it at the start of a
   * write transaction): it may have added rows, so the next row ids are read again when needed,
   * and the projections are opened afresh (what their writers keep of the file, such as byte
   * totals and counts of small run-log pieces, may be stale). If this ledger holds deferred
   * decisions, the other may have written them: all it holds is let go, and the events after the
   * tables' checkpoint are folded again. (If the other appended, `moved` lets go of the domains
   * too.) While no other connection writes, all of it is kept from one transaction to the next.
   */
  private otherWrote(): void {
    if (this.unprojected > 0) return this.letGo();
    this.d.forgetIds();
    this.projections = new ProjectionSet(this.db, this.store.path);
  }

  /** What this ledger holds in memory goes: the next transaction starts from the tables (`catchUp`). */
  private letGo(): void {
    this.ctxs.clear();
    this.d.reset();
    this.projections = new ProjectionSet(this.db, this.store.path);
    this.touched.clear();
    this.unprojected = 0;
    this.forceProjection = false;
    this.caughtUp = false;
  }

  /**
   * Brings the domains in memory to the head: reads where the projection tables stand (their
   * checkpoint) and, when the log goes further (projections deferred by a ledger that did not
   * write them, or by this one before it let them go), folds the events after it as rebuild does,
   * the domains taken back from the tables at the checkpoint. The decisions are queued, not
   * written: the transaction writes them with its own, or defers them further. Called at the start
   * of each write transaction (after the store looked for other writers) and before a domain is
   * read outside one.
   */
  private catchUp(): void {
    if (this.caughtUp) return;
    const head = this.store.lastPosition;
    const at = this.s.projectedTo.get();
    this.checkpointKnown = at !== undefined;
    // No checkpoint: a ledger whose every transaction wrote its projections (none deferred yet).
    this.projectedTo = at === undefined || at > head ? head : at;
    this.caughtUp = true;
    if (this.projectedTo === head) return;
    try {
      for (const [pos, stream, version, type, data] of this.store.readForFold(undefined, this.projectedTo + 1)) {
        this.foldOne(pos, stream, version, type, data, true);
        this.unprojected++;
      }
    } catch (e) {
      this.letGo();
      throw e;
    }
  }

  /** How one transaction adds its commands: numbered from 0, with the batch's one timestamp. */
  private begin(): (inp: Input) => Outcome {
    const batch: Batch = { recordedAt: new Date().toISOString() };
    let index = 0;
    return (inp) => this.execute(inp, index++, batch);
  }

  /** Optimistic concurrency: every named stream must still be at the version the caller saw. */
  private checkExpected(opts: AppendOptions): void {
    for (const [name, expected] of Object.entries(opts.expectedVersions ?? {})) {
      // A domain with events after the tables' checkpoint is in memory (catchUp), at its version.
      const actual = this.ctxs.get(name)?.version ?? Number(this.s.stream.get(name)?.version ?? 0n);
      if (actual !== expected) throw new ConcurrencyError(name, expected, actual);
    }
  }

  /**
   * The transaction rolled back: in-memory state may be ahead of the file (and what was deferred
   * before it went with it: the events are stored, the next transaction folds them again).
   */
  private abandon(): void {
    this.letGo();
  }

  /** Whether this transaction writes the projections: always without deferral, else once enough are deferred. */
  private get projecting(): boolean {
    return this.unprojected >= this.deferLimit || this.forceProjection;
  }

  /**
   * The end of a write transaction: the projections written up to the head, with the streams rows
   * of the domains that moved and the checkpoint, unless they are deferred (`deferProjections`).
   */
  private finishBatch(): void {
    if (!this.projecting) {
      // The tables' position, written once: a ledger that finds no checkpoint takes its tables to be at the head.
      if (!this.checkpointKnown) this.s.checkpointIfMissing.run(this.projectedTo);
      this.checkpointKnown = true;
      return;
    }
    this.forceProjection = false;
    this.flushProjections();
    for (const ctx of this.touched) this.saveStream(ctx);
    this.touched.clear();
    this.projectedTo = this.store.lastPosition;
    this.unprojected = 0;
    this.s.checkpoint.run(this.projectedTo);
    this.checkpointKnown = true;
  }

  private saveStream(ctx: Ctx): void {
    this.s.setVersion.run(ctx.version, toDb(ctx.maxSpan), ctx.invalidations, toDb(ctx.invalidatedBytes), ctx.id);
  }

  // ---- domain state ----

  private ctx(name: string, index: number): Ctx {
    let c = this.ctxs.get(name);
    if (!c) {
      c = this.loadCtx(name);
      if (!c) {
        throw new LedgerError(
          `domain: no domain ${JSON.stringify(name)} in this ledger (create it first: {"op":"domain","domain":${JSON.stringify(name)},"profile":"intel-vtd"})`,
          index,
        );
      }
    }
    if (c.destroyed) throw new LedgerError(`domain: ${JSON.stringify(name)} was destroyed`, index);
    return c;
  }

  private newCtx(id: number, name: string, profile: Profile, version: number, destroyed: boolean): Ctx {
    const c = newDomainState(id, name, profile, version, destroyed);
    this.ctxs.set(name, c);
    return c;
  }

  /** Takes one domain's live state back from the projection tables (domain-state.ts). */
  private loadCtx(name: string): Ctx | undefined {
    this.catchUp();
    // The catch-up may have brought it (it has events after the tables' checkpoint).
    const caught = this.ctxs.get(name);
    if (caught) return caught;
    const c = loadDomainState({ db: this.db, s: this.s, lastPosition: this.projectedTo }, name);
    if (c) this.ctxs.set(name, c);
    return c;
  }

  // ---- one command ----

  /** The id a command brings: the caller's, else its source's (file digest and line). */
  private sourceId(inp: Input): string | undefined {
    if (inp.cmd.id) return inp.cmd.id;
    const f = inp.from;
    if (f?.digest && f.line !== undefined) return importedId(f.digest, f.line);
    return undefined;
  }

  private execute(inp: Input, index: number, batch: Batch): Outcome {
    const out = this.executeOne(inp, index, batch);
    if (out.position !== undefined) {
      this.d.maybeCheckpoint(this.ctxs.get(out.domain), out.position);
      this.unprojected++;
    }
    this.counted();
    // Deferred: nothing is handed to the projections before the transaction knows it writes them.
    if (!this.projecting) return out;
    // A long session (a big import) has its rows written as it goes: memory stays flat.
    if (this.d.endedSinceFlush > FLUSH_EVERY) this.flushProjections();
    else if (this.d.pending >= PROJECT_EVERY) this.applyProjections();
    return out;
  }

  /** One more event appended or folded (or found stored already): every `collectEvery`-th, a full collection when asked for. */
  private counted(): void {
    if (this.collectGarbage !== undefined && ++this.sinceCollect >= this.collectEvery) {
      this.sinceCollect = 0;
      this.collectGarbage();
    }
  }

  /** Hands the events decided since the last call to the registered projections (registry.ts). */
  private applyProjections(): void {
    if (this.d.pending === 0) return;
    const batch = this.d.take();
    this.projections.apply(batch);
  }

  private executeOne(inp: Input, index: number, batch: Batch): Outcome {
    const cmd = inp.cmd;
    const pos = this.store.lastPosition + 1;
    const who: Who = {};
    if (cmd.caller !== undefined) who.caller = cmd.caller;
    if (cmd.site !== undefined) who.site = cmd.site;
    if (cmd.task !== undefined) who.task = cmd.task;
    if (cmd.pid !== undefined) who.pid = cmd.pid;
    if (cmd.tgid !== undefined) who.tgid = cmd.tgid;
    if (cmd.cpu !== undefined) who.cpu = cmd.cpu;
    const out: Outcome = { index, op: cmd.op, domain: cmd.domain, ok: true };
    // A command stored before (same id) is a no-op, whatever its domain has become since.
    const given = this.sourceId(inp);
    if (given !== undefined && this.store.positionOf(given) !== undefined) return { ...out, duplicate: true };

    if (cmd.op === 'domain') {
      const existing = this.ctxs.get(cmd.domain) ?? this.loadCtx(cmd.domain);
      const id = given ?? derivedId(cmd.domain, 1);
      if (existing) throw new LedgerError(`domain: ${JSON.stringify(cmd.domain)} already exists in this ledger`, index);
      const profile = profileOf(cmd, index);
      const desc = describeProfile(profile);
      const info = this.s.insStream.run(cmd.domain, JSON.stringify(desc), pos);
      const ctx = this.newCtx(Number(info.lastInsertRowid), cmd.domain, profile, 0, false);
      this.appendEvent(ctx, 'domain-created', id, cmd.time, { profile: desc }, who, inp.from, batch);
      this.d.decide(ctx, pos, who, inp.from, UNKNOWN_CALLER, '', { type: 'domain-created', body: { profile: desc } });
      return { ...out, position: pos };
    }

    const ctx = this.ctx(cmd.domain, index);
    const id = given ?? derivedId(cmd.domain, ctx.version + 1);
    // Kept for as long as the caller's maps live: interned, so a name sliced out of a big input
    // chunk (a trace line) does not keep that whole chunk in memory.
    const caller = intern(cmd.caller ?? UNKNOWN_CALLER);
    const site = intern(cmd.site ?? '');
    out.position = pos;

    switch (cmd.op) {
      case 'map': {
        const prot = cmd.prot ?? 3;
        const r = ctx.core.map({ iova: cmd.iova, paddr: cmd.paddr, size: cmd.size, prot, ref: pos, by: askerOf(caller, site) });
        const fields: MapFields = { iova: cmd.iova, paddr: cmd.paddr, size: cmd.size, prot, ok: r.ok };
        if (!r.ok) {
          fields.errno = r.errno;
          fields.reason = r.reason;
          out.ok = false;
          out.errno = r.errno;
          out.reason = r.reason;
        }
        if (cmd.inferred !== undefined) fields.inferred = cmd.inferred;
        this.appendEvent(ctx, 'map', id, cmd.time, encodeMapBody(fields), who, inp.from, batch);
        this.d.map(ctx, pos, who, inp.from, caller, site, fields, r);
        return out;
      }
      case 'unmap': {
        const start = cmd.iova;
        const classification = this.d.classify(ctx, pos, start, cmd.size, caller);
        const observed = cmd.observedUnmapped;
        // What a trace saw the kernel do is the authority: the pages follow it (core/observed.ts),
        // unless a what-if asks for the prediction's pages.
        const follow = observed !== undefined && cmd.followPrediction !== true;
        const r = follow ? ctx.core.unmapObserved({ iova: cmd.iova, size: cmd.size }, observed) : ctx.core.unmap({ iova: cmd.iova, size: cmd.size });
        const predicted = r.predicted ?? r.unmappedSize;
        const recorded = observed ?? r.unmappedSize;
        const fields: UnmapFields = { iova: cmd.iova, size: cmd.size, ok: r.ok, unmapped: recorded };
        if (!r.ok) {
          fields.errno = r.errno;
          fields.reason = r.reason;
        }
        if (observed !== undefined) {
          fields.observed = true;
          if (observed !== predicted) {
            fields.predicted = predicted;
            if (follow) fields.followed = true;
          }
        }
        this.appendEvent(ctx, 'unmap', id, cmd.time, encodeUnmapBody(fields), who, inp.from, batch);
        Object.assign(out, { ok: r.ok, errno: r.errno, reason: r.reason, unmapped: recorded, predicted, symmetry: classification.analysis.class });
        out.collateral = this.d.unmap(ctx, pos, who, inp.from, caller, site, fields, r, predicted, classification).collateral;
        out.leftMapped = r.leftMapped;
        return out;
      }
      case 'fault': {
        const stored = dropUndefined({ iova: hex(cmd.iova), device: cmd.device, driver: cmd.driver, flags: cmd.flags });
        this.appendEvent(ctx, 'fault', id, cmd.time, stored, who, inp.from, batch);
        const fields = dropUndefined({ iova: cmd.iova, device: cmd.device, driver: cmd.driver, flags: cmd.flags });
        out.faultCause = this.d.fault(ctx, pos, who, inp.from, caller, site, fields).cause;
        return out;
      }
      case 'attach':
      case 'detach': {
        const type = cmd.op === 'attach' ? 'device-attached' : 'device-detached';
        const fields = dropUndefined({ device: cmd.device, groupId: cmd.groupId });
        this.appendEvent(ctx, type, id, cmd.time, fields, who, inp.from, batch);
        this.d.decide(ctx, pos, who, inp.from, caller, site, { type, body: fields });
        return out;
      }
      case 'destroy': {
        this.appendEvent(ctx, 'domain-destroyed', id, cmd.time, {}, who, inp.from, batch);
        this.d.destroyState(ctx, pos);
        this.s.setDestroyed.run(pos, ctx.version, ctx.id);
        this.d.decide(ctx, pos, who, inp.from, caller, site, { type: 'domain-destroyed', body: {} });
        return out;
      }
    }
  }

  private appendEvent(ctx: Ctx, type: EventType, id: string, time: string | undefined, body: object, who: Who, from: Origin | undefined, batch: Batch): void {
    ctx.version++;
    const data: Record<string, unknown> = { body };
    if (Object.keys(who).length) data.who = who;
    // The origin, last in the data, is handed apart: the store may keep it as integers (events/compact.ts).
    this.store.append(
      {
        stream: ctx.name,
        version: ctx.version,
        type,
        id,
        recordedAt: batch.recordedAt,
        time: time ?? null,
        data: JSON.stringify(data),
        from: from as Readonly<Record<string, unknown>> | undefined,
      },
      ctx.id,
    );
    this.touched.add(ctx);
  }

  /**
   * Hands the decided events to the projections and has them write what they gathered: the runs
   * table then says every end, so the ends kept for `lastRemovalOf` are let go.
   */
  private flushProjections(): void {
    this.applyProjections();
    this.projections.flush();
    for (const c of this.ctxs.values()) c.endedPending.clear();
    this.d.endedSinceFlush = 0;
  }

  // ---- rebuild ----

  /**
   * Drops every projection, or those `projections` names (with the ones that share a table with
   * them: `rebuildSet`), and recomputes it from the events alone (streaming). Returns how many
   * stored outcomes the core now computes differently (0 unless the semantics changed), what the
   * hash chain said, and the projections rebuilt.
   *
   * All in one write transaction: the projection tables rebuilt are dropped and created again as
   * the current schema has them (a table or index that was missing or reshaped is back); then the
   * events are folded from the first, each decoded through the schema of stored events. The hash
   * chain is walked as `verify` walks it, on a worker thread while the fold reads the log
   * (events/chain-check.ts, from `chainThreadFrom` events on), else in the fold's own read. A broken
   * chain refuses the rebuild (BrokenChainError, with the first break: everything rolls back)
   * unless `acceptBrokenChain` and every projection is rebuilt; so does an event that does not
   * fit. When both happen, the one a walk in the read would meet first is told (a break at or
   * before the event that does not fit).
   *
   * The projections not rebuilt keep their rows and take only the events after the tables'
   * checkpoint (those whose projections were deferred and not written), so every projection ends at
   * the head. A rebuild of some projections gives their rows exactly as a rebuild of all would
   * (test/ledger/rebuild-some.test.ts): the fold is the same, row ids are given from 1 as in an
   * empty table, and the one look-up the decisions make in a table (the runs that removed a page,
   * `lastRemoval`) sees only rows ended before the event being folded.
   */
  rebuild(
    onProgress?: (done: number, total: number) => void,
    opts: { acceptBrokenChain?: boolean; projections?: readonly string[] } = {},
  ): { events: number; mismatches: number; chain: VerifyResult; projections: string[] } {
    let chosen: Projection[];
    try {
      chosen = opts.projections === undefined ? [...PROJECTIONS] : rebuildSet(opts.projections);
    } catch (e) {
      throw new LedgerError(`rebuild: ${(e as Error).message}`);
    }
    const all = chosen.length === PROJECTIONS.length;
    let total = this.store.lastPosition;
    let mismatches = 0;
    let n = 0;
    let chain: VerifyResult | undefined;
    const fold = this.db.transaction(() => {
      // Under the write lock: another writer may have appended since this ledger last looked.
      this.store.refreshHead();
      total = this.store.lastPosition;
      // A break of the hash chain stops the fold and rolls everything back, unless the caller
      // accepts it, for a rebuild of every projection (one of some would leave the others
      // following the events as they were).
      const accepted = opts.acceptBrokenChain === true;
      const refuse = (r: VerifyResult): void => {
        if (!(accepted && all)) throw new BrokenChainError(r, accepted);
      };
      // The chain is walked on a worker thread while this one folds (events/chain-check.ts), or,
      // for a small log or without a worker, checked as the events are read for the fold.
      const check = total >= this.chainThreadFrom ? ParallelChainCheck.start(this.store.path) : undefined;
      const walk = check ? undefined : new ChainWalk(accepted && all ? undefined : refuse);
      // No event read yet: a failure before the fold (recreating the tables) comes before any break.
      this.store.foldAt = 0;
      try {
        // Where the tables kept stand: no checkpoint row is a ledger whose every transaction wrote them.
        const stood = all ? 0 : this.s.projectedTo.get();
        const kept = stood === undefined || stood > total ? total : stood;
        recreateProjectionTables(this.db, all ? PROJECTION_TABLES : chosen.flatMap((p) => p.tables));
        this.prepareStatements();
        this.letGo();
        if (!all) this.projections = new ProjectionSet(this.db, this.store.path, PROJECTIONS, (p) => (chosen.includes(p) ? 0 : kept));
        this.d.restartIds();
        deleteMeta(this.db, all ? ['rebuild-needed', 'run-log-needed'] : chosen.includes(runs) ? ['run-log-needed'] : []);
        for (const [pos, stream, version, type, data] of this.store.readForFold(walk)) {
          if (this.foldOne(pos, stream, version, type, data, false)) mismatches++;
          n++;
          if (n % 8192 === 0) {
            this.flushProjections();
            // A break the worker has found already stops the fold here, not at its end.
            const r = check?.poll();
            if (r && !r.ok) refuse(r);
          } else if (this.d.pending >= PROJECT_EVERY) this.applyProjections();
          if (onProgress && n % 65536 === 0) onProgress(n, total);
          this.counted();
        }
        // A worker that did not answer: the chain walked here (not by another worker, as `verify` would).
        chain = check ? (check.wait() ?? verifyChain(this.db)) : walk!.result();
        if (check && !chain.ok) refuse(chain);
        this.flushProjections();
        for (const c of this.ctxs.values()) this.saveStream(c);
        this.s.checkpoint.run(total);
      } catch (e) {
        // What a walk in the read would have said first: a break at or before the event the fold
        // stopped at (its row did not fit, or folding it failed).
        if (check && !(e instanceof BrokenChainError)) {
          const r = check.wait() ?? this.verifyOrNot();
          if (r && !r.ok && r.firstBad !== undefined && r.firstBad <= this.store.foldAt) refuse(r);
        }
        throw e;
      } finally {
        check?.stop();
      }
    });
    try {
      fold.immediate();
    } catch (e) {
      // Rolled back: the tables are as they were, so are the statements prepared on them.
      this.abandon();
      this.prepareStatements();
      throw e;
    }
    this.letGo();
    return { events: n, mismatches, chain: chain!, projections: chosen.map((p) => p.name) };
  }

  /** The hash chain walked here, for a fold that failed (undefined when the walk fails too: the fold's error is told). */
  private verifyOrNot(): VerifyResult | undefined {
    try {
      return verifyChain(this.db);
    } catch {
      return undefined;
    }
  }

  /**
   * One stored event folded into the decision state (rebuild, catch-up): the core replays it on
   * its domain and the decider decides it again, its facts queued for the projections. A domain
   * is made by its domain-created event (with the profile the event holds, covered by the hash
   * chain, not the streams table's copy); a catch-up (`load`) takes a domain it has not met yet
   * back from the tables, where they stand. True when the core now computes its outcome
   * differently from the stored one.
   */
  private foldOne(pos: number, stream: string, version: number, type: EventType, data: DecodedData, load: boolean): boolean {
    const who = data.who ?? {};
    const from = data.from;
    const caller = who.caller ?? UNKNOWN_CALLER;
    const site = who.site ?? '';
    let ctx = this.ctxs.get(stream);
    const ev = decodeBody(type, data.body);
    let mismatch = false;
    if (ev.type === 'domain-created') {
      const id = this.s.stream.get(stream)?.id;
      if (id === undefined) throw unfitEvent(this.store.describe(pos), `its domain ${stream} is missing from the streams table`);
      ctx = this.newCtx(Number(id), stream, profileFromDescriptor(ev.body.profile), 0, false);
    } else if (!ctx && load) ctx = this.loadCtx(stream);
    if (!ctx) throw unfitEvent(this.store.describe(pos), `its domain ${stream} has no domain-created event before it`);
    ctx.version = version;
    this.touched.add(ctx);
    if (ev.type === 'map') {
      const body = ev.body;
      const r = replayMap(ctx.core, pos, body, askerOf(caller, site));
      if (r.ok !== body.ok) mismatch = true;
      this.d.map(ctx, pos, who, from, caller, site, body, r);
    } else if (ev.type === 'unmap') {
      const body = ev.body;
      const { iova, size } = body;
      const classification = this.d.classify(ctx, pos, iova, size, caller);
      const r = replayUnmap(ctx.core, body);
      const stored = body.predicted ?? body.unmapped;
      const predicted = r.predicted ?? r.unmappedSize;
      if (r.ok !== body.ok || predicted !== stored) mismatch = true;
      this.d.unmap(ctx, pos, who, from, caller, site, body, r, predicted, classification);
    } else if (ev.type === 'fault') {
      this.d.fault(ctx, pos, who, from, caller, site, ev.body);
    } else {
      if (ev.type === 'domain-destroyed') this.d.destroyState(ctx, pos);
      this.d.decide(ctx, pos, who, from, caller, site, ev);
    }
    this.d.maybeCheckpoint(ctx, pos);
    return mismatch;
  }

  /**
   * The live core state of a domain (for importers that must see what is mapped to decide where
   * a record belongs). Read it only; it changes as commands are appended.
   */
  peek(name: string): Domain | undefined {
    const c = this.ctxs.get(name) ?? this.loadCtx(name);
    return c && !c.destroyed ? c.core : undefined;
  }

  /**
   * A domain's pages as they were before event `position` (the same replay as rebuild's, of that
   * domain's events only: events/replay.ts), with whether it was destroyed by then; undefined
   * when it did not exist yet. For an import that resumes: its decisions start from the state its
   * first event found.
   */
  domainBefore(name: string, position: number): ReplayedDomain | undefined {
    const replay = new DomainReplay();
    for (const ev of this.store.events(1, position - 1)) if (ev.stream === name) replay.apply(ev);
    return replay.domains.get(name);
  }

  /**
   * What each caller of a domain believes is mapped now (the mapping-intent projection): its maps
   * minus its own unmaps, by caller then IOVA, with each interval's intent row and map event.
   */
  intentNow(name: string): Array<{ caller: string; iova: bigint; size: bigint; mapPos: number; row: number }> {
    const c = this.ctxs.get(name) ?? this.loadCtx(name);
    if (!c) throw new LedgerError(`domain: no domain ${JSON.stringify(name)} in this ledger`);
    if (c.destroyed) return [];
    // Between appends every interval has its row (a batch writes its rows before it commits), or,
    // while the projections are deferred, the id its row will have.
    const out: Array<{ caller: string; iova: bigint; size: bigint; mapPos: number; row: number }> = [];
    for (const caller of [...c.intent.keys()].sort()) {
      for (const iv of c.intent.get(caller)!) out.push({ caller, iova: iv.start, size: iv.end - iv.start, mapPos: iv.value, row: iv.tag });
    }
    return out;
  }

  /** Names of the domains, in creation order. */
  domains(): Array<{ name: string; profile: ProfileDescriptor; version: number; destroyed: boolean }> {
    return this.store.streams().map((s) => ({
      name: s.name,
      profile: JSON.parse(s.profile) as ProfileDescriptor,
      version: s.version,
      destroyed: s.destroyed_at !== null,
    }));
  }
}

// Queries that find the projections behind the log bring them to the head with this (catch-up.ts).
registerCatchUp((path) => {
  const l = new Ledger(path, { mustExist: true });
  try {
    l.projectNow();
  } finally {
    l.close();
  }
});

function profileOf(cmd: Extract<Command, { op: 'domain' }>, index: number): Profile {
  try {
    const custom = cmd.pgsizes !== undefined || cmd.pgsizeBitmap !== undefined || cmd.iovaBits !== undefined || cmd.emptyUnmapErrno !== undefined;
    if (cmd.profile && !custom) return resolveProfile(cmd.profile, cmd.semantics);
    if (!cmd.profile && !custom) {
      throw new Error('profile: give a built-in profile ("profile":"intel-vtd"; see \'iommu-ledger profiles\') or page sizes ("pgsizes":["4K","2M"])');
    }
    const spec: Record<string, unknown> = { name: cmd.profile ? `${cmd.profile}+custom` : `custom:${cmd.domain}` };
    if (cmd.profile) spec.base = cmd.profile;
    for (const k of ['pgsizes', 'pgsizeBitmap', 'iovaBits', 'semantics', 'emptyUnmapErrno'] as const) if (cmd[k] !== undefined) spec[k] = cmd[k];
    return customProfile(spec);
  } catch (e) {
    throw new LedgerError((e as Error).message, index);
  }
}

function dropUndefined<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}
