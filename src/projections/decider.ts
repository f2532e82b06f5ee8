/**
 * The decisions (issue 16, item 1: decide → append → project): what each command or stored event
 * means beyond its pages, decided with the core and the domain's decision state (domain-state.ts),
 * and queued as a decided event (`Decided`, registry.ts) for the projections: the runs it started
 * and ended (with the row ids it gives them in order of birth), how it changed the callers'
 * intent, how an unmap relates to the maps it reached (classification, collateral and who still
 * intended it, stepped or harmful verdicts), why a fault happened, and the snapshots and hardware
 * counters due at the event. The ledger (ledger.ts) runs the core and appends the event, then asks
 * the decider; append and rebuild ask it the same way. Not pure: the page-removal look-ups read
 * the runs table and stored events (docs/architecture.md, "Projections: the registry and the batch
 * contract").
 */
import { hex } from '../core/address.js';
import { runEnd, type MapOrigin, type MapResult, type Run, type UnmapResult } from '../core/domain.js';
import type { Interval } from '../core/intervals.js';
import type { StepVerdict } from '../core/stepping.js';
import { classifyUnmap, tryUnmap } from '../core/symmetry.js';
import { BEFORE_TRACE_CALLER, type Origin, type Who } from '../events/schema.js';
import type { FaultFields, MapFields, UnmapFields } from '../events/decode.js';
import { unreadable } from './corrupt.js';
import { toDb } from './codec.js';
import { RunWriter, shiftOf } from './runlog.js';
import { IntentWriter } from './intentsnap.js';
import type { LedgerStatements } from './statements.js';
import type { CollateralFinding, Decided, Decision, FaultCause, IntentChanges, RunChanges, UnmapClassification } from './registry.js';
import { HW_CHECKPOINT_EVERY } from './hardware.js';
import { saturated } from './symmetry.js';
import { askerOf, decodeEventRow, intentOf, StoredOrigin, UNKNOWN_CALLER, type DomainState, type StoredRead } from './domain-state.js';

/** Callers that are nobody in particular: their pages are never "another owner's" (core/stepping.ts). */
const ANONYMOUS_CALLERS: ReadonlySet<string> = new Set([BEFORE_TRACE_CALLER]);

/** Runs longer than this are found through the runs_long index (schema 4). */
const LONG_RUN = 2n * 1024n * 1024n;

type Ctx = DomainState;

/**
 * An interval of a caller's intent: its value is the position of the map event it comes from,
 * its `tag` the interval's intent row id, given when it is born (intent.ts writes the row).
 */
type IntentInterval = Interval;

/** What an unmap's item says of its finding (findings.ts), as `projectUnmap` finds it. */
export type FindingFacts = Pick<Extract<Decided, { type: 'unmap' }>, 'collateral' | 'settled' | 'progressed' | 'verdict' | 'pending'>;

export class Decider {
  /**
   * The id the next runs row gets: read (max(id) + 1) when first needed, then counted, so rows get
   * the ids SQLite would give them in order of birth; read again after another connection wrote
   * or a transaction failed (`forgetIds`).
   */
  private nextRunId: number | undefined;
  /** How the event being decided changed the runs (handed to the runs projection with its item). */
  private runChanges: RunChanges | undefined;
  /** Runs ended since the projections were last flushed (`endedPending`, all domains). */
  endedSinceFlush = 0;
  /**
   * The id the next intent row gets: read (max(id) + 1) when first needed, then counted, so rows
   * get the ids SQLite would give them in order of birth; read again after another connection
   * wrote or a transaction failed (`forgetIds`).
   */
  private nextIntentId: number | undefined;
  /** How the event being decided changed the intent (handed to the intent projection with its item). */
  private intentChanges: IntentChanges | undefined;
  /** Events decided since the registered projections were last handed them, in position order. */
  private decided: Decided[] = [];

  /**
   * @param s the write path's statements (set again when `rebuild` recreated the tables)
   * @param snapshotEvery a domain's live runs and intent are snapshot every this many of its events
   */
  constructor(
    public s: LedgerStatements,
    private readonly snapshotEvery: number,
  ) {}

  /** The events decided since the last call, in position order (for the projections). */
  take(): Decided[] {
    const batch = this.decided;
    this.decided = [];
    return batch;
  }

  /** A map the core carried out or refused: its facts queued for the projections (append and rebuild alike). */
  map(ctx: Ctx, pos: number, who: Who, from: Origin | undefined, caller: string, site: string, body: MapFields, r: MapResult): void {
    const settled = this.projectMap(ctx, pos, caller, site, r, body.iova, body.size, body.inferred !== undefined);
    this.decide(ctx, pos, who, from, caller, site, settled ? { type: 'map', body, result: r, settled } : { type: 'map', body, result: r });
  }

  /**
   * An unmap the core carried out (classified before it did: `classify`), with the bytes recorded as
   * unmapped (`body.unmapped`) and the profile's prediction: its facts queued for the projections.
   * Returns those of its finding (its collateral, for the command's outcome).
   */
  unmap(
    ctx: Ctx,
    pos: number,
    who: Who,
    from: Origin | undefined,
    caller: string,
    site: string,
    body: UnmapFields,
    r: UnmapResult,
    predicted: bigint,
    classification: UnmapClassification,
  ): FindingFacts {
    const found = this.projectUnmap(ctx, pos, caller, body.iova, body.size, r, body.unmapped, predicted);
    this.decide(ctx, pos, who, from, caller, site, { type: 'unmap', body, result: r, recorded: body.unmapped, predicted, classification, ...found });
    return found;
  }

  /** An IO page fault: the verdicts it settles and its cause, queued for the projections. Returns the cause. */
  fault(ctx: Ctx, pos: number, who: Who, from: Origin | undefined, caller: string, site: string, body: FaultFields): FaultCause {
    const settled = this.settle(ctx, ctx.steps.fault(body.iova, pos));
    const cause = this.faultCause(ctx, pos, body.iova);
    this.decide(ctx, pos, who, from, caller, site, settled ? { type: 'fault', body, cause, settled } : { type: 'fault', body, cause });
    return cause;
  }

  /** How many events are decided and not taken yet. */
  get pending(): number {
    return this.decided.length;
  }

  /** The next row ids are read again when next needed (another connection may have added rows). */
  forgetIds(): void {
    this.nextIntentId = undefined;
    this.nextRunId = undefined;
  }

  /** A fold from the first event (rebuild): row ids are given from 1, whatever the tables hold. */
  restartIds(): void {
    this.nextIntentId = 1;
    this.nextRunId = 1;
  }

  /** A transaction rolled back: what was decided in it goes with it. */
  reset(): void {
    this.forgetIds();
    this.intentChanges = undefined;
    this.runChanges = undefined;
    this.endedSinceFlush = 0;
    this.decided = [];
  }

  /** A stored event read by its position, decoded through the schema of stored events (one that does not fit is named). */
  private storedEvent(pos: number): StoredRead | undefined {
    const ev = this.s.eventData.get(pos);
    return ev && decodeEventRow(ev);
  }

  /** The caller of a map origin, for the run log (without reading its event when the log said it). */
  private callerOf(o: MapOrigin): string | undefined {
    return o instanceof StoredOrigin ? o.caller : o.by?.caller;
  }

  /** Hardware snapshots at every HW_CHECKPOINT_EVERY-th event of a domain (the same in rebuild). */
  maybeCheckpoint(ctx: Ctx | undefined, pos: number): void {
    if (!ctx) return;
    if (ctx.version % HW_CHECKPOINT_EVERY === 0) {
      const item = this.decided[this.decided.length - 1];
      if (item?.position !== pos) throw new Error(`internal: event #${pos} was not decided`);
      item.hardware = { stats: ctx.core.stats(), invalidations: ctx.invalidations, invalidatedBytes: ctx.invalidatedBytes };
    }
    if (ctx.version % this.snapshotEvery === 0) this.snapshot(ctx, pos);
  }

  /**
   * Every live run of a domain just after event pos, sorted by IOVA, for the runs projection
   * (run_snapshots), and its live intent (intent_snapshots), as facts of the event's item.
   */
  private snapshot(ctx: Ctx, pos: number): void {
    this.snapshotIntent(ctx, pos);
    const w = new RunWriter();
    // A destroyed domain's core keeps its last runs (they are ended in the runs table): none are live.
    if (!ctx.destroyed)
      for (const r of ctx.core.runs()) {
        if (r.row === 0) throw new Error(`internal: run at ${hex(r.iova)} has no row`);
        w.push(r.row, r.iova, r.paddr, shiftOf(r.pageSize), Number(r.count), r.level, r.origin.prot, r.origin.ref, r.from, NaN, this.callerOf(r.origin));
      }
    this.decided[this.decided.length - 1]!.runSnapshot = w;
  }

  /**
   * The live intent of a domain just after event pos, by caller (sorted by name) then IOVA, for
   * the intent projection (intent_snapshots: only the latest is kept), on the event's item.
   */
  private snapshotIntent(ctx: Ctx, pos: number): void {
    const item = this.decided[this.decided.length - 1];
    if (item?.position !== pos) throw new Error(`internal: event #${pos} was not decided`);
    // Callers with live intervals only: a set emptied by unmaps is dropped, as a reload would.
    const callers = ctx.destroyed ? [] : [...ctx.intent.keys()].filter((k) => ctx.intent.get(k)!.size > 0).sort();
    const live = new IntentWriter(callers.reduce((a, k) => a + ctx.intent.get(k)!.size, 0));
    callers.forEach((caller, k) => {
      for (const iv of ctx.intent.get(caller)!) live.push(iv.tag, iv.start, iv.end - 1n, iv.value, k);
    });
    item.intentSnapshot = { callers, live, maxId: this.intentId() - 1 };
  }

  /** Queues a decided event for the registered projections (registry.ts). */
  decide(ctx: Ctx, position: number, who: Who, from: Origin | undefined, caller: string, site: string, what: Decision): void {
    const item = what as Decided;
    item.position = position;
    item.domain = ctx.id;
    item.stream = ctx.name;
    item.version = ctx.version;
    item.who = who;
    if (from !== undefined) item.from = from;
    item.caller = caller;
    item.site = site;
    if (this.runChanges !== undefined) {
      item.runs = this.runChanges;
      this.runChanges = undefined;
    }
    if (this.intentChanges !== undefined) {
      item.intent = this.intentChanges;
      this.intentChanges = undefined;
    }
    this.decided.push(item);
  }

  /**
   * A map's facts for the projections (runs, intent), the same when appending and rebuilding. Returns
   * the verdicts it gives earlier over-unmaps by mapping into their collateral (for its item).
   */
  private projectMap(
    ctx: Ctx,
    pos: number,
    caller: string,
    site: string,
    r: MapResult,
    iova: bigint,
    size: bigint,
    inferred: boolean,
  ): StepVerdict[] | undefined {
    if (!r.ok) return undefined;
    const settled = inferred ? undefined : this.settle(ctx, ctx.steps.map(caller, iova, iova + size, pos));
    this.writeRuns(ctx, pos, { before: [], after: r.changes.after });
    // A mapping inferred from before the trace is nobody's known intent (its caller is unknown,
    // and the unmap that shows it removes it at once): no intent, no caller count.
    if (!inferred) this.addIntent(ctx, caller, iova, iova + size, pos);
    return settled;
  }

  /**
   * How an unmap relates to the maps alive when it is issued (core/symmetry.ts), and whether it
   * reaches another caller's map: taken before the core carries it out. Partial unmaps, misses
   * and unmaps across a hole also get what they would do under each unmap behaviour (the
   * caller-symmetry projection writes their asymmetric_unmaps rows: symmetry.ts).
   */
  classify(ctx: Ctx, pos: number, start: bigint, size: bigint, caller: string): UnmapClassification {
    const a = classifyUnmap(ctx.core, start, size);
    let foreign = false;
    const mapsBy = a.maps.map((o) => {
      const by = o.by ?? askerOf(UNKNOWN_CALLER, '');
      if (by.caller !== caller) foreign = true;
      return by;
    });
    const c: UnmapClassification = { analysis: a, mapsBy, foreign };
    // What each behaviour would do, for the unmaps an audit of callers needs: partial ones (tried
    // on O(1) clones), misses, and whole-map unmaps across a hole (which the loops stop at).
    // Exact mirrors and hole-free spans do the same under every behaviour: counted only.
    const partial = a.class === 'cuts' || a.class === 'straddles';
    if (partial || a.class === 'misses' || a.afterHole > 0n) {
      c.behaviours = {
        legacy: partial ? tryUnmap(ctx.core, start, size, 'legacy') : { over: 0n, left: a.afterHole },
        split: { over: 0n, left: a.afterHole }, // io-pgtable-arm's split removes exactly the request, up to a hole
        strict: partial
          ? tryUnmap(ctx.core, start, size, 'strict')
          : a.class === 'misses' && ctx.profile.emptyUnmapErrno
            ? { over: 0n, left: 0n, errno: ctx.profile.emptyUnmapErrno }
            : { over: 0n, left: 0n },
      };
      c.missedAfter = a.class === 'misses' && size > 0n ? this.overUnmapOf(ctx, pos, start) : null;
    }
    return c;
  }

  /** The unmap that removed the page at iova as collateral (outside its request), if one did: why an unmap missed. */
  private overUnmapOf(ctx: Ctx, pos: number, iova: bigint): number | null {
    const at = this.lastRemovalOf(ctx, pos, iova);
    if (at === undefined) return null;
    const ev = this.storedEvent(at);
    if (ev?.type !== 'unmap') return null;
    const s = ev.body.iova;
    return iova >= s && iova < s + ev.body.size ? null : at;
  }

  /** The position of the event before `before` that last removed the page at iova (stored rows and this batch's). */
  private lastRemovalOf(ctx: Ctx, before: number, iova: bigint): number | undefined {
    const x = toDb(iova);
    const near = toDb(iova >= LONG_RUN ? iova - LONG_RUN : 0n);
    let at = this.s.lastRemoval.get({ d: ctx.id, x, near, before }) ?? undefined;
    if (ctx.maxSpan > LONG_RUN) {
      const far = toDb(iova >= ctx.maxSpan ? iova - ctx.maxSpan : 0n);
      const long = this.s.lastRemovalLong.get({ d: ctx.id, x, far, before }) ?? null;
      if (long !== null && (at === undefined || long > at)) at = long;
    }
    // Pages removed since the projections last wrote their rows are not in the runs table yet.
    const recent = ctx.endedPending.lastRemovalOf(iova);
    if (recent !== undefined && (at === undefined || recent > at)) at = recent;
    return at;
  }

  /**
   * The runs an event ended and started, for the runs projection (runs.ts writes the rows): each
   * run born gets its row id now, in order of birth.
   */
  private writeRuns(ctx: Ctx, pos: number, changes: { before: Run[]; after: Run[] }): void {
    if (!changes.before.length && !changes.after.length) return;
    const ch = (this.runChanges ??= { born: [], ended: [] });
    for (const r of changes.before) {
      if (r.row === 0) throw new Error(`internal: run at ${hex(r.iova)} has no row`);
      ch.ended.push(r.row);
      ctx.endedPending.add(r.iova, runEnd(r), pos);
      this.endedSinceFlush++;
    }
    let id = (this.nextRunId ??= (this.s.maxRunId.get() ?? 0) + 1);
    for (const r of changes.after) {
      r.row = id;
      r.from = pos;
      ch.born.push({ id: id++, run: r, caller: this.callerOf(r.origin) });
      const span = runEnd(r) - r.iova;
      if (span > ctx.maxSpan) ctx.maxSpan = span;
    }
    this.nextRunId = id;
  }

  private addIntent(ctx: Ctx, caller: string, start: bigint, end: bigint, pos: number): void {
    for (const iv of intentOf(ctx, caller).add(start, end, pos)) this.bornIntent(caller, iv);
  }

  /** The id the next intent row gets (read when first needed in a write transaction). */
  private intentId(): number {
    return (this.nextIntentId ??= (this.s.maxIntentId.get() ?? 0) + 1);
  }

  /**
   * An interval of intent born at the event being decided: it gets its row id now (the intent
   * projection writes the row, intent.ts).
   */
  private bornIntent(caller: string, iv: IntentInterval): void {
    iv.tag = this.intentId();
    this.nextIntentId = iv.tag + 1;
    (this.intentChanges ??= { born: [], ended: [] }).born.push({ id: iv.tag, caller, start: iv.start, end: iv.end, mapPos: iv.value });
  }

  /** An interval of intent ended by the event being decided. */
  private closeIntent(iv: IntentInterval): void {
    if (iv.tag < 1) throw new Error(`internal: intent ${hex(iv.start)}..${hex(iv.end)} has no row`);
    (this.intentChanges ??= { born: [], ended: [] }).ended.push(iv.tag);
  }

  destroyState(ctx: Ctx, pos: number): void {
    this.writeRuns(ctx, pos, { before: [...ctx.core.runs()], after: [] });
    for (const set of ctx.intent.values()) for (const iv of set) this.closeIntent(iv);
    ctx.destroyed = true;
  }

  /**
   * An unmap's facts for the projections (runs, intent, the domain's invalidations), the same when
   * appending and rebuilding, and the facts of its finding (findings.ts): its collateral with who
   * mapped and who still intended each piece, and what the stepping tracker settled or learned.
   */
  private projectUnmap(ctx: Ctx, pos: number, caller: string, iova: bigint, size: bigint, r: UnmapResult, recorded: bigint, predicted: bigint): FindingFacts {
    // This unmap is its caller's next one: it settles the caller's undecided over-unmaps.
    const steps = ctx.steps.unmap(caller, iova, iova + size, pos);
    const settled = this.settle(ctx, steps.verdicts);
    // The cases go on changing: their state as it is now (the spans are never changed in place).
    const progressed = steps.progressed.length ? steps.progressed.map((c) => ({ ...c })) : undefined;
    this.writeRuns(ctx, pos, r.changes);
    if (r.hw.invalidations.length) {
      ctx.invalidations += r.hw.invalidations.length;
      for (const inv of r.hw.invalidations) ctx.invalidatedBytes = saturated(ctx.invalidatedBytes + inv.end - inv.start);
    }
    // The caller no longer intends what it asked to unmap (when the unmap was carried out).
    if (r.ok || r.unmappedSize > 0n) {
      const set = ctx.intent.get(caller);
      if (set) {
        const { removed, kept } = set.subtract(iova, iova + size);
        for (const iv of removed) this.closeIntent(iv);
        for (const iv of kept) this.bornIntent(caller, iv);
      }
    }
    const found: FindingFacts = { collateral: [] };
    if (settled) found.settled = settled;
    if (progressed) found.progressed = progressed;
    if (!r.collateral.length) return found;
    const collateral: CollateralFinding[] = r.collateral.map((c) => {
      const owners: string[] = [];
      for (const [who, set] of ctx.intent) if (set.intersects(c.start, c.end)) owners.push(who);
      // By name: the intent map's order is the order callers were first seen, which a domain
      // reloaded from its snapshot (callers sorted) does not keep; a finding must not depend on it.
      owners.sort();
      return {
        iova: c.start,
        size: c.end - c.start,
        mappedBy: c.origin.ref,
        mappedByCaller: c.origin.by?.caller ?? UNKNOWN_CALLER,
        owners,
      };
    });
    found.collateral = collateral;
    // Stepped or harmful (core/stepping.ts): decided now, or by a later event of this domain.
    let removedStart = iova;
    for (const c of collateral) if (c.iova < removedStart) removedStart = c.iova;
    const verdict = ctx.steps.overUnmap({
      position: pos,
      caller,
      request: { start: iova, end: iova + size },
      removed: { start: removedStart, end: iova + recorded },
      collateral: r.collateral.map((c, i) => ({
        start: c.start,
        end: c.end,
        mappedBy: collateral[i]!.mappedByCaller,
        mapEnd: c.origin.iova + c.origin.size,
        intendedBy: collateral[i]!.owners,
      })),
      anonymous: ANONYMOUS_CALLERS,
    });
    if (verdict) {
      found.verdict = verdict;
      if (verdict.stepped) this.forgetCollateral(ctx, verdict);
    } else found.pending = { ...ctx.steps.pending[ctx.steps.pending.length - 1]! };
    return found;
  }

  /**
   * Verdicts the tracker gave earlier over-unmaps (the findings projection writes them): a stepped
   * one's collateral leaves its caller's intent. Returns them, or undefined when there are none.
   */
  private settle(ctx: Ctx, verdicts: StepVerdict[]): StepVerdict[] | undefined {
    if (!verdicts.length) return undefined;
    for (const v of verdicts) if (v.stepped) this.forgetCollateral(ctx, v);
    return verdicts;
  }

  /**
   * The caller of a stepped over-unmap consumed the returned size: it no longer intends the
   * collateral (from `v.at`, the event being decided: the tracker settles a case at the event
   * that settles it).
   */
  private forgetCollateral(ctx: Ctx, v: StepVerdict): void {
    const set = ctx.intent.get(v.caller);
    if (!set) return;
    for (const c of v.collateral) {
      const { removed, kept } = set.subtract(c.start, c.end);
      for (const iv of removed) this.closeIntent(iv);
      for (const iv of kept) this.bornIntent(v.caller, iv);
    }
  }

  /** Why an IO page fault happened: what last removed the page at iova, if anything (the faults projection stores it: faults.ts). */
  private faultCause(ctx: Ctx, pos: number, iova: bigint): FaultCause {
    const live = ctx.core.find(iova);
    if (live)
      return { cause: 'mapped', position: null, detail: { mappedBy: live.origin.ref, note: 'the page is mapped: a permission or a device-side fault' } };
    const removedAt = this.lastRemovalOf(ctx, pos, iova);
    if (removedAt === undefined) return { cause: 'never-mapped', position: null, detail: {} };
    const ev = this.storedEvent(removedAt);
    if (!ev) throw unreadable(`the runs of domain ${ctx.name}`, `a run ends at event #${removedAt}, which is not stored`);
    if (ev.type !== 'unmap') return { cause: ev.type === 'domain-destroyed' ? 'use-after-destroy' : 'use-after-unmap', position: removedAt, detail: {} };
    const s = ev.body.iova;
    return {
      cause: iova >= s && iova < s + ev.body.size ? 'use-after-unmap' : 'use-after-collateral-unmap',
      position: removedAt,
      detail: { unmap: { iova: ev.stored.iova, size: ev.stored.size }, caller: ev.who.caller ?? UNKNOWN_CALLER },
    };
  }
}
