/**
 * `migrate`: turns a recorded history into a symmetric one by a migration (define.ts), writes it
 * as a new ledger (the source is opened read-only), and verifies it (verify.ts): per caller and
 * in total, (a) maps the source stored as ok that are refused, (b) unmaps that removed something
 * in the source and remove nothing now, (c) the pages mapped at the end of each domain, (d) the
 * faults, (e) what each caller still believes mapped at the end; every difference is a
 * regression unless it follows from a real fix. Also the cost before and after (calls, pages
 * written per level, table memory, invalidations).
 * Two passes over the source: the first finds where later unmaps cut each map (split-maps
 * needs to know when the map is issued); the second transforms, appends and checks each command;
 * then the ends of both ledgers are compared from their stored projections.
 */
import { existsSync, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { formatSize, hex, type Range } from '../core/address.js';
import { Domain, runEnd, type HwDelta, type MapResult, type UnmapResult } from '../core/domain.js';
import { kernelRange } from '../core/observed.js';
import { IntervalSet } from '../core/intervals.js';
import { minPageSize, profileFromDescriptor, type Profile } from '../core/profile.js';
import { classifyUnmap, SYMMETRIC, tryUnmap } from '../core/symmetry.js';
import { commandFromEvent } from '../events/recommand.js';
import { BEFORE_TRACE_CALLER, parseCommand, type Origin } from '../events/schema.js';
import { createdDomain, replayMap, replayUnmap, type ReplayEvent } from '../events/replay.js';
import { EventStore } from '../events/store.js';
import { EndReader } from '../projections/compare.js';
import { markMigrated } from '../projections/meta.js';
import { Ledger, UNKNOWN_CALLER, type Outcome } from '../projections/ledger.js';
import { loadQueryBuilder, Queries, type FindingView } from '../projections/queries.js';
import { MigrationError, ruleFor, type LiveMap, type Migration, type MigrationContext, type OutCommand, type SourceCommand } from './define.js';
import { norm, subtract, union, within } from './ranges.js';
import { Verifier, type CallerTotals, type FixKind, type Issued, type Problem, type ProblemKind, type RegressionKind } from './verify.js';

export { FAILING, REGRESSION_ORDER, REGRESSIONS, type CallerTotals, type FixKind, type Problem, type ProblemKind, type RegressionKind } from './verify.js';

export interface Cost {
  maps: number;
  unmaps: number;
  levels: string[];
  /** Page-table entries written (maps and splits) per level, over the whole history. */
  entriesWritten: number[];
  tablesAllocated: number;
  peakTableBytes: number;
  /** At the end of the history. */
  finalEntries: number[];
  finalTableBytes: number;
  invalidations: number;
  invalidatedBytes: bigint;
}

export interface MigrationResult {
  source: string;
  out: string;
  migration: string;
  scope?: string;
  sourceEvents: number;
  migratedEvents: number;
  /** Source map/unmap commands per strategy label. */
  strategies: Record<string, number>;
  /** Per call site: the strategy labels its commands got. */
  siteStrategies: Array<{ domain: string; caller: string; site: string; strategies: Record<string, number> }>;
  /** Regressions, fixes and notes, by source position (the first 1000 of each kind). */
  problems: Problem[];
  /** Problems of each kind (complete). */
  counts: Partial<Record<ProblemKind, number>>;
  /** Bytes per kind (end state, intent, fixes). */
  bytes: Partial<Record<ProblemKind, bigint>>;
  /** Regressions of commands kept as they are (not migrated, not failures), per the regression they would be. */
  notMigrated: Partial<Record<RegressionKind, number>>;
  /** Real fixes per kind. */
  fixed: Record<FixKind, number>;
  /** Unmaps that removed pages before the source did, which the same caller's following unmaps then removed in the source (a teardown), and those bytes. */
  caughtUp: { unmaps: number; bytes: bigint };
  /** What `unmap-as-mapped` did with the unmaps it was given (when it was used). */
  unmapAsMapped?: UnmapAsMappedStats;
  /** Per domain and caller: regressions (and their bytes), fixes, not migrated. */
  byCaller: CallerTotals[];
  /** The migrated commands under the source's own unmap behaviour (the hardware it ran on). */
  onSourceBehaviour: Record<string, { semantics: string; overUnmaps: number; overBytes: bigint; leftMapped: number; leftBytes: bigint }>;
  cost: Record<string, { before: Cost; after: Cost }>;
  /** Wall-clock milliseconds: the first pass, the second (appending and the checks of each command), the checks alone, the comparison of the ends. */
  timings: { pass1: number; pass2: number; checks: number; ends: number; total: number };
  passed: boolean;
}

/** The unmaps `unmap-as-mapped` was given, by what became of them. */
export interface UnmapAsMappedStats {
  unmaps: number;
  /** Became unmaps of whole maps (`maps` of them in all). */
  whole: number;
  maps: number;
  /** Dropped: the pages the source removed were no longer mapped in the new ledger (an earlier whole unmap took them). */
  droppedDone: number;
  /** Dropped: the source's unmap removed nothing (a miss, or refused). */
  droppedNothing: number;
  /** Unmaps of holes the caller still believed mapped (they remove nothing; see Holes in docs/migrate.md). */
  holes: number;
  /** Kept as they are and flagged: the pages the source removed touch another caller's map. */
  flagged: number;
}

export interface MigrateOptions {
  /** Only this caller's commands are transformed; the others are kept as they are. */
  caller?: string;
  onProgress?: (done: number, total: number) => void;
  /** The words for a source over-unmap's stepped/harmful verdict, in the verification's details (the CLI's: cli/render/verdicts.ts). */
  stepText?: (f: FindingView) => string | undefined;
}

class CostMeter {
  c: Cost;
  constructor(p: Profile) {
    const n = p.format.levels.length;
    this.c = {
      maps: 0,
      unmaps: 0,
      levels: p.format.levels.map((l) => l.name),
      entriesWritten: new Array<number>(n).fill(0),
      tablesAllocated: 0,
      peakTableBytes: 0,
      finalEntries: new Array<number>(n).fill(0),
      finalTableBytes: 0,
      invalidations: 0,
      invalidatedBytes: 0n,
    };
  }
  map(r: MapResult, d: Domain): void {
    this.c.maps++;
    if (r.ok) this.hw(r.hw, d);
  }
  unmap(r: UnmapResult, d: Domain): void {
    this.c.unmaps++;
    this.hw(r.hw, d);
  }
  private hw(h: HwDelta, d: Domain): void {
    h.entriesWritten.forEach((n, i) => (this.c.entriesWritten[i]! += n));
    this.c.tablesAllocated += h.tablesAllocated.reduce((a, b) => a + b, 0);
    this.c.invalidations += h.invalidations.length;
    for (const r of h.invalidations) this.c.invalidatedBytes += r.end - r.start;
    const t = d.stats().tableMemoryBytes;
    if (t > this.c.peakTableBytes) this.c.peakTableBytes = t;
  }
  finish(d: Domain): Cost {
    const s = d.stats();
    this.c.finalEntries = s.levels.map((l) => l.entries);
    this.c.finalTableBytes = s.tableMemoryBytes;
    return this.c;
  }
}

interface DState {
  name: string;
  profile: Profile;
  /** The source commands on the source's hardware and behaviour, following the kernel where the source did (cost "before"). */
  src: Domain;
  /** The migrated commands on the source's hardware and behaviour (cost "after", and the sentence on the source hardware). */
  chk: Domain;
  /** Each caller's intent in the new ledger (its maps minus its own unmaps): where a hole is still meant mapped. */
  migIntent: Map<string, IntervalSet>;
  /** Caller and site of each map alive in the migrated ledger, by its position there. */
  migInfo: Map<number, { caller: string; site: string; source: number }>;
  before: CostMeter;
  after: CostMeter;
  onSource: { overUnmaps: number; overBytes: bigint; leftMapped: number; leftBytes: bigint };
}

/** Pass 1: for each map (by source position), the addresses inside it where later unmaps begin or end. */
function collectCuts(src: EventStore): Map<number, bigint[]> {
  const cuts = new Map<number, Set<bigint>>();
  const domains = new Map<
    string,
    { alive: IntervalSet; maps: Map<number, { iova: bigint; end: bigint; pieces: number }>; minPage: bigint; spaceEnd: bigint }
  >();
  for (const ev of src.events()) {
    if (ev.type === 'domain-created') {
      const p = profileFromDescriptor(ev.body.profile);
      domains.set(ev.stream, { alive: new IntervalSet(), maps: new Map(), minPage: minPageSize(p.pgsizeBitmap), spaceEnd: 1n << BigInt(p.iovaBits) });
      continue;
    }
    const d = domains.get(ev.stream);
    if (!d) continue;
    if (ev.type === 'domain-destroyed') {
      d.alive = new IntervalSet();
      d.maps.clear();
      continue;
    }
    if (ev.type !== 'map' && ev.type !== 'unmap') continue;
    const iova = ev.body.iova;
    const size = ev.body.size;
    const end = iova + size;
    const aligned = size > 0n && iova % d.minPage === 0n && size % d.minPage === 0n && end <= d.spaceEnd;
    if (!aligned) continue;
    // The symmetric world: a map takes its range if it is free; an unmap frees exactly its request.
    if (ev.type === 'map') {
      if (ev.body.paddr % d.minPage !== 0n || d.alive.overlapping(iova, end).length) continue;
      d.alive.add(iova, end, ev.position);
      d.maps.set(ev.position, { iova, end, pieces: 1 });
      continue;
    }
    for (const iv of d.alive.overlapping(iova, end)) {
      const m = d.maps.get(iv.value)!;
      for (const edge of [iova, end]) {
        if (edge > m.iova && edge < m.end) {
          let s = cuts.get(iv.value);
          if (!s) cuts.set(iv.value, (s = new Set()));
          s.add(edge);
        }
      }
    }
    const { removed, kept } = d.alive.subtract(iova, end);
    for (const iv of removed) d.maps.get(iv.value)!.pieces--;
    for (const iv of kept) d.maps.get(iv.value)!.pieces++;
    for (const iv of removed) if (d.maps.get(iv.value)?.pieces === 0) d.maps.delete(iv.value);
  }
  const out = new Map<number, bigint[]>();
  for (const [k, s] of cuts)
    out.set(
      k,
      [...s].sort((a, b) => (a < b ? -1 : 1)),
    );
  return out;
}

export async function migrate(source: string, outPath: string, m: Migration, o: MigrateOptions = {}): Promise<MigrationResult> {
  if (!existsSync(source)) throw new MigrationError(`no ledger at ${source}`);
  if (existsSync(outPath)) throw new MigrationError(`${outPath} exists: migrate writes a new ledger; choose another --out or remove it`);
  const t0 = performance.now();
  await loadQueryBuilder();
  const src = new EventStore(source, { readonly: true });
  const srcQ = new Queries(source, { readonly: true });
  let dst: Ledger | undefined;
  let made = false;
  try {
    if (o.caller !== undefined && !new EndReader(srcQ).hasCaller(o.caller))
      throw new MigrationError(`--caller ${JSON.stringify(o.caller)}: no command in ${source} has that caller`);
    const cuts = collectCuts(src);
    const t1 = performance.now();
    dst = new Ledger(outPath);
    made = true;
    const verifier = new Verifier(srcQ, o.stepText);
    const result = await run(src, dst, cuts, m, o, source, outPath, verifier);
    markMigrated(dst, source, m.name);
    const outLast = dst.lastPosition;
    dst.close();
    dst = undefined;
    const t2 = performance.now();
    const outQ = new Queries(outPath, { readonly: true });
    let v;
    try {
      v = verifier.finish(outQ, src.lastPosition, outLast);
    } finally {
      outQ.close();
    }
    const t3 = performance.now();
    result.timings = { pass1: t1 - t0, pass2: t2 - t1, checks: result.timings.checks, ends: t3 - t2, total: t3 - t0 };
    return {
      ...result,
      problems: v.problems,
      counts: v.counts,
      bytes: v.bytes,
      notMigrated: v.notMigrated,
      fixed: v.fixed,
      byCaller: v.byCaller,
      caughtUp: v.caughtUp,
      passed: v.passed,
    };
  } catch (e) {
    dst?.close();
    if (made) for (const suffix of ['', '-wal', '-shm']) rmSync(outPath + suffix, { force: true });
    throw e;
  } finally {
    srcQ.close();
    src.close();
  }
}

type Partial2 = Omit<MigrationResult, 'problems' | 'counts' | 'bytes' | 'notMigrated' | 'fixed' | 'byCaller' | 'caughtUp' | 'passed'>;

async function run(
  src: EventStore,
  dst: Ledger,
  cuts: Map<number, bigint[]>,
  m: Migration,
  o: MigrateOptions,
  source: string,
  out: string,
  verifier: Verifier,
): Promise<Partial2> {
  const total = src.lastPosition;
  const states = new Map<string, DState>();
  const strategies: Record<string, number> = {};
  const siteStrategies = new Map<string, { domain: string; caller: string; site: string; strategies: Record<string, number> }>();
  const costs: Record<string, { before: Cost; after: Cost }> = {};
  const onSourceBehaviour: MigrationResult['onSourceBehaviour'] = {};
  let sourceEvents = 0;
  let checks = 0;
  const uam: UnmapAsMappedStats = { unmaps: 0, whole: 0, maps: 0, droppedDone: 0, droppedNothing: 0, holes: 0, flagged: 0 };

  await dst.sessionAsync(async (add) => {
    for (const ev of src.events()) {
      sourceEvents++;
      if (o.onProgress && sourceEvents % 32768 === 0) {
        o.onProgress(sourceEvents, total);
        await new Promise((r) => setImmediate(r)); // let a progress bar draw
      }
      // Where the source event came from (file and line), without the file digest: the ledger
      // derives ids from digest+line, and one source line may become several migrated commands.
      const srcFrom = ev.from ?? {};
      const from: Origin = {
        ...(srcFrom.source !== undefined ? { source: srcFrom.source } : {}),
        ...(srcFrom.line !== undefined ? { line: srcFrom.line } : {}),
        derivedFrom: { position: ev.position, id: ev.id, strategy: 'copy' },
      };
      if (ev.type !== 'map' && ev.type !== 'unmap') {
        const cmd = commandFromEvent(ev, ev.type === 'domain-created' ? { semantics: 'strict' } : {}, false);
        verifier.sourceEvent(ev.position, ev.stream, ev.who.caller ?? UNKNOWN_CALLER, ev.who.site ?? '', 'copy');
        const r = add({ cmd: parseCommand(cmd), from });
        if (r.position !== undefined) verifier.made(r.position, ev.position);
        if (ev.type === 'domain-created') {
          const profile = profileFromDescriptor(ev.body.profile);
          verifier.domainCreated(ev.stream);
          states.set(ev.stream, {
            name: ev.stream,
            profile,
            src: createdDomain(ev.body, profile), // the profile just decoded from this event
            chk: new Domain(profile),
            migIntent: new Map(),
            migInfo: new Map(),
            before: new CostMeter(profile),
            after: new CostMeter(profile),
            onSource: { overUnmaps: 0, overBytes: 0n, leftMapped: 0, leftBytes: 0n },
          });
        } else if (ev.type === 'domain-destroyed') {
          const s = states.get(ev.stream)!;
          costs[s.name] = { before: s.before.finish(s.src), after: s.after.finish(s.chk) };
          onSourceBehaviour[s.name] = { semantics: s.profile.semantics, ...s.onSource };
          states.delete(ev.stream);
          verifier.destroyed(ev.stream, ev.position, r.position!);
        }
        continue;
      }
      const st = states.get(ev.stream);
      if (!st) throw new MigrationError(`source event ${ev.position}: domain ${ev.stream} has no domain-created event before it`);
      const who = ev.who;
      const b = ev.body;
      const mb = ev.type === 'map' ? ev.body : undefined;
      const ub = ev.type === 'unmap' ? ev.body : undefined;
      const cmd: SourceCommand = {
        op: ev.type,
        position: ev.position,
        domain: ev.stream,
        iova: b.iova,
        size: b.size,
        ...(mb ? { paddr: mb.paddr, prot: mb.prot } : {}),
        ...(who.caller !== undefined ? { caller: who.caller } : {}),
        ...(who.site !== undefined ? { site: who.site } : {}),
        ...(who.task !== undefined ? { task: who.task } : {}),
        ...(who.pid !== undefined ? { pid: who.pid } : {}),
        ...(ev.time ? { time: ev.time } : {}),
        ...(ub ? { unmapped: ub.ok ? ub.unmapped : 0n } : {}),
      };
      const caller = cmd.caller ?? UNKNOWN_CALLER;
      const site = cmd.site ?? '';
      const inScope = o.caller === undefined || o.caller === caller;
      const rule = inScope ? ruleFor(m, cmd) : { strategy: 'keep' as const, label: 'keep' };
      strategies[rule.label] = (strategies[rule.label] ?? 0) + 1;
      const sk = `${st.name}\0${caller}\0${site}`;
      let ss = siteStrategies.get(sk);
      if (!ss) siteStrategies.set(sk, (ss = { domain: st.name, caller, site, strategies: {} }));
      ss.strategies[rule.label] = (ss.strategies[rule.label] ?? 0) + 1;
      verifier.sourceEvent(ev.position, st.name, caller, site, rule.label);

      // The source on its own hardware, for the cost before (the pages follow the kernel where the source did),
      // and what the source's unmap removed (the same fold as the source ledger's projection).
      const su = applySource(st, ev);
      const srcRemoved = su ? removedBy(su) : [];

      // The migration's commands for it.
      let flagged = false;
      const ctx = contextFor(
        st,
        dst,
        cuts,
        (detail) => {
          flagged = true;
          verifier.flagged({ position: ev.position, domain: st.name, caller, site, strategy: rule.label, iova: cmd.iova, size: cmd.size }, detail);
        },
        { cmd, removed: srcRemoved, ok: b.ok !== false },
        uam,
      );
      let outs: OutCommand[];
      if (rule.strategy === 'split-maps') outs = ctx.splitMaps(cmd);
      else if (rule.strategy === 'widen-unmaps') outs = ctx.widenUnmaps(cmd);
      else if (rule.strategy === 'unmap-as-mapped') outs = ctx.unmapAsMapped(cmd);
      else if (rule.strategy === 'flag') outs = ctx.flag(cmd);
      else if (rule.strategy === 'keep') outs = [asOut(cmd)];
      else {
        try {
          outs = rule.strategy(cmd, ctx);
        } catch (e) {
          throw new MigrationError(`${m.name}, ${rule.label}, source event ${ev.position}: the transform threw: ${(e as Error).message}`);
        }
        if (!Array.isArray(outs)) throw new MigrationError(`${m.name}, ${rule.label}, source event ${ev.position}: a transform returns an array of commands`);
      }

      const issued: Issued[] = [];
      // Pages the issued unmaps removed in the new ledger (to find those the source still maps).
      const newRemoved: Range[] = [];
      outs.forEach((oc, k) => {
        const c: Record<string, unknown> = {
          op: oc.op,
          domain: st.name,
          iova: oc.iova,
          size: oc.size,
          ...(oc.op === 'map' ? { paddr: oc.paddr, prot: oc.prot ?? cmd.prot ?? 3 } : {}),
        };
        const ownCaller = oc.caller === undefined || oc.caller === cmd.caller;
        for (const [key, v] of Object.entries({ caller: oc.caller ?? cmd.caller, site: oc.site ?? (ownCaller ? cmd.site : undefined), time: cmd.time }))
          if (v !== undefined) c[key] = v;
        if (ownCaller) for (const key of ['task', 'pid', 'tgid', 'cpu'] as const) if (who[key] !== undefined) c[key] = who[key];
        // A map an importer inferred (from before the trace) stays an inference, in pieces too: nobody's intent.
        if (oc.op === 'map' && cmd.op === 'map' && ownCaller && mb?.inferred !== undefined) c.inferred = mb.inferred;
        let parsed;
        try {
          parsed = parseCommand(c);
        } catch (e) {
          throw new MigrationError(`${m.name}, ${rule.label}, source event ${ev.position}, command ${k + 1} it returned: ${(e as Error).message}`);
        }
        const hit = oc.op === 'unmap' ? ctx.mapsIn(oc.iova, oc.size) : [];
        const span = { start: oc.iova, end: oc.iova + oc.size };
        const mappedBefore = oc.op === 'unmap' ? (dst.peek(st.name)?.mappedIn(span) ?? []) : undefined;
        const r = add({ cmd: parsed, from: { ...from, derivedFrom: { position: ev.position, id: ev.id, strategy: rule.label } } });
        if (mappedBefore?.length && r.ok) newRemoved.push(...subtract(mappedBefore, dst.peek(st.name)?.mappedIn(span) ?? []));
        if (r.position !== undefined) verifier.made(r.position, ev.position);
        const oCaller = (c.caller as string | undefined) ?? UNKNOWN_CALLER;
        const back = mappedBackFrom.get(oc);
        issued.push({ op: oc.op, iova: oc.iova, size: oc.size, caller: oCaller, ...(back !== undefined ? { backOf: back } : {}), r });
        applyMigrated(st, oc, oCaller, (c.site as string | undefined) ?? '', r, ev.position);
        // Forget the callers of maps that are gone (a map is gone when none of its pages is left).
        const live = dst.peek(st.name);
        for (const h of hit) if (!live || ![...live.runs(h.iova, h.iova + h.size)].some((x) => x.origin.ref === h.position)) st.migInfo.delete(h.position);
      });

      // Removed in the new ledger outside the request, and still mapped in the source after it:
      // removed earlier than the source did (unmap-as-mapped at the first step of a teardown).
      let early: Range[] = [];
      if (newRemoved.length) {
        const outside = subtract(norm(newRemoved), [{ start: cmd.iova, end: cmd.iova + cmd.size }]);
        if (outside.length) {
          const live = dst.peek(st.name);
          early = subtract(norm(outside.flatMap((x) => st.src.mappedIn(x))), live ? norm(outside.flatMap((x) => live.mappedIn(x))) : []);
        }
      }

      const t = performance.now();
      verifier.command(
        {
          position: ev.position,
          domain: st.name,
          caller,
          site,
          strategy: rule.label,
          op: ev.type,
          iova: cmd.iova,
          size: cmd.size,
          ok: b.ok !== false,
          ...(b.errno !== undefined ? { errno: b.errno } : {}),
          unmapped: ub ? ub.unmapped : 0n,
          flagged,
          ...(ev.type === 'unmap' ? { removed: srcRemoved } : {}),
          ...(early.length ? { early } : {}),
        },
        issued,
        dst.peek(st.name),
      );
      checks += performance.now() - t;
    }
  });

  for (const s of states.values()) costs[s.name] = { before: s.before.finish(s.src), after: s.after.finish(s.chk) };
  for (const s of states.values()) onSourceBehaviour[s.name] = { semantics: s.profile.semantics, ...s.onSource };
  return {
    source,
    out,
    migration: m.name,
    ...(o.caller !== undefined ? { scope: o.caller } : {}),
    sourceEvents,
    migratedEvents: dst.lastPosition,
    strategies,
    siteStrategies: [...siteStrategies.values()],
    onSourceBehaviour,
    cost: costs,
    ...(uam.unmaps ? { unmapAsMapped: uam } : {}),
    timings: { pass1: 0, pass2: 0, checks, ends: 0, total: 0 },
  };
}

function asOut(c: SourceCommand): OutCommand {
  return c.op === 'map' ? { op: 'map', iova: c.iova, size: c.size, paddr: c.paddr!, prot: c.prot ?? 3 } : { op: 'unmap', iova: c.iova, size: c.size };
}

function intentOf(m: Map<string, IntervalSet>, caller: string): IntervalSet {
  let s = m.get(caller);
  if (!s) m.set(caller, (s = new IntervalSet()));
  return s;
}

/**
 * Applies a source event to the source model (cost before) through the shared replay
 * (events/replay.ts), as the source ledger's rebuild does: the pages follow the kernel where the
 * source's did.
 */
function applySource(st: DState, ev: Extract<ReplayEvent, { type: 'map' | 'unmap' }>): UnmapResult | undefined {
  if (ev.type === 'map') {
    const r = replayMap(st.src, ev.position, ev.body);
    st.before.map(r, st.src);
    return undefined;
  }
  const r = replayUnmap(st.src, ev.body);
  st.before.unmap(r, st.src);
  return r;
}

/** The pages an unmap removed (a split block's rewritten rest excluded), sorted and merged. */
function removedBy(r: UnmapResult): Range[] {
  if (!r.ok || !r.removed.length) return [];
  const runs = (xs: typeof r.removed) => norm(xs.map((x) => ({ start: x.iova, end: runEnd(x) })));
  return r.rewritten.length ? subtract(runs(r.removed), runs(r.rewritten)) : runs(r.removed);
}

/** The migrated models of one migrated command: intent, the source-behaviour run, cost, the callers of live maps. */
function applyMigrated(st: DState, oc: OutCommand, caller: string, site: string, r: Outcome, source: number): void {
  const start = oc.iova;
  const end = oc.iova + oc.size;
  if (oc.op === 'map') {
    const c = st.chk.map({ iova: oc.iova, paddr: oc.paddr!, size: oc.size, prot: oc.prot ?? 3, ref: r.position! });
    st.after.map(c, st.chk);
    if (r.ok) {
      st.migInfo.set(r.position!, { caller, site, source: mappedBackFrom.get(oc) ?? source });
      intentOf(st.migIntent, caller).add(start, end, r.position!);
    }
    return;
  }
  const c = st.chk.unmap({ iova: oc.iova, size: oc.size });
  st.after.unmap(c, st.chk);
  if (c.collateral.length) {
    st.onSource.overUnmaps++;
    for (const x of c.collateral) st.onSource.overBytes += x.end - x.start;
  }
  if (c.leftMapped.length) {
    st.onSource.leftMapped++;
    for (const x of c.leftMapped) st.onSource.leftBytes += x.end - x.start;
  }
  if (r.ok || (r.unmapped ?? 0n) > 0n) st.migIntent.get(caller)?.subtract(start, end);
}

/** A map that widen-unmaps issues to map back part of a map: the source position of that map. */
const mappedBackFrom = new WeakMap<OutCommand, number>();

/** The source command being migrated, with what its unmap removed in the source (pages) and whether it was carried out. */
interface Current {
  cmd: SourceCommand;
  removed: Range[];
  ok: boolean;
}

/** What a transform may ask about the migrated history, and the built-in strategies. */
function contextFor(
  st: DState,
  dst: Ledger,
  cuts: Map<number, bigint[]>,
  report: (detail: string) => void,
  current: Current,
  uam: UnmapAsMappedStats,
): MigrationContext {
  const mapsIn = (iova: bigint, size: bigint): LiveMap[] => {
    const d = dst.peek(st.name);
    if (!d) return [];
    const seen = new Set<number>();
    const out: LiveMap[] = [];
    for (const r of d.runs(iova, iova + size)) {
      const o = r.origin;
      if (seen.has(o.ref)) continue;
      seen.add(o.ref);
      const info = st.migInfo.get(o.ref);
      out.push({ position: o.ref, iova: o.iova, size: o.size, paddr: o.paddr, prot: o.prot, ...(info ? { caller: info.caller, site: info.site } : {}) });
    }
    return out;
  };
  // Only the legacy and split loops stop at a hole; strict unmap (VFIO v2, iommufd) takes a range
  // with holes as it is (and iommufd refuses an unmap of nothing, so holes must not be cut off).
  const stopsAtHoles = st.profile.semantics !== 'strict';
  // A hole is unmapped on its own only where an unmap of nothing is not an error (no ENOENT).
  const along = (s: bigint, e: bigint, maps: LiveMap[], caller: string | undefined) =>
    stopsAtHoles ? alongMaps(s, e, maps, st.profile.emptyUnmapErrno ? undefined : st.migIntent.get(caller ?? UNKNOWN_CALLER)) : undefined;
  const mapText = (o: { ref: number; iova: bigint; size: bigint }) => {
    const info = st.migInfo.get(o.ref);
    return `the map ${hex(o.iova)}+${formatSize(o.size)}${info ? ` (source #${info.source}, by ${info.caller})` : ''}`;
  };
  /** What strict unmap does with an unmap kept as it is. */
  const strictText = (cmd: SourceCommand) => {
    const d = dst.peek(st.name);
    if (!d) return 'strict unmap carries it out';
    const strict = tryUnmap(d, cmd.iova, cmd.size, 'strict');
    return strict.errno
      ? `strict unmap refuses it (${strict.errno})`
      : strict.over
        ? `strict unmap removes ${formatSize(strict.over)} more`
        : 'strict unmap carries it out';
  };
  const ctx: MigrationContext = {
    mapsIn,
    cutsOf: (cmd) => (cmd.op === 'map' ? (cuts.get(cmd.position) ?? []) : []),
    splitMaps(cmd) {
      if (cmd.op !== 'map') return along(cmd.iova, cmd.iova + cmd.size, mapsIn(cmd.iova, cmd.size), cmd.caller) ?? [asOut(cmd)];
      const points = [cmd.iova, ...ctx.cutsOf(cmd), cmd.iova + cmd.size];
      const out: OutCommand[] = [];
      for (let i = 0; i + 1 < points.length; i++) {
        const s = points[i]!;
        out.push({ op: 'map', iova: s, size: points[i + 1]! - s, paddr: cmd.paddr! + (s - cmd.iova), prot: cmd.prot ?? 3 });
      }
      return out;
    },
    widenUnmaps(cmd) {
      if (cmd.op !== 'unmap') return [asOut(cmd)];
      const s = cmd.iova;
      const e = cmd.iova + cmd.size;
      const maps = mapsIn(s, cmd.size);
      if (maps.every((mm) => mm.iova >= s && mm.iova + mm.size <= e)) return along(s, e, maps, cmd.caller) ?? [asOut(cmd)];
      let ws = s;
      let we = e;
      for (const mm of maps) {
        if (mm.iova < ws) ws = mm.iova;
        if (mm.iova + mm.size > we) we = mm.iova + mm.size;
      }
      const out: OutCommand[] = along(ws, we, maps, cmd.caller) ?? [{ op: 'unmap', iova: ws, size: we - ws }];
      for (const mm of maps) {
        const me = mm.iova + mm.size;
        const who = { ...(mm.caller !== undefined ? { caller: mm.caller } : {}), ...(mm.site !== undefined ? { site: mm.site } : {}) };
        const source = st.migInfo.get(mm.position)?.source;
        const back = (c: OutCommand) => {
          if (source !== undefined) mappedBackFrom.set(c, source);
          out.push(c);
        };
        if (mm.iova < s) back({ op: 'map', iova: mm.iova, size: (me < s ? me : s) - mm.iova, paddr: mm.paddr, prot: mm.prot, ...who });
        if (me > e) {
          const from = mm.iova > e ? mm.iova : e;
          back({ op: 'map', iova: from, size: me - from, paddr: mm.paddr + (from - mm.iova), prot: mm.prot, ...who });
        }
      }
      return out;
    },
    flag(cmd, reason) {
      if (cmd.op === 'unmap') {
        const d = dst.peek(st.name);
        const a = d ? classifyUnmap(d, cmd.iova, cmd.size) : undefined;
        const caller = cmd.caller ?? UNKNOWN_CALLER;
        const foreign = a ? a.maps.some((o) => (st.migInfo.get(o.ref)?.caller ?? UNKNOWN_CALLER) !== caller) : false;
        if (a && (!SYMMETRIC.has(a.class) || foreign)) {
          const what = foreign && SYMMETRIC.has(a.class) ? "removes another caller's mapping" : `${a.class} ${a.maps.map(mapText).join(', ')}`;
          report(`${reason ?? `unmap ${hex(cmd.iova)}+${formatSize(cmd.size)} ${what}: kept as it is`}; ${strictText(cmd)}`);
        }
      }
      return [asOut(cmd)];
    },
    unmapAsMapped(cmd) {
      if (cmd.op !== 'unmap') return [asOut(cmd)];
      uam.unmaps++;
      // What the source's unmap removed: from the source model for the command being migrated,
      // else the range the kernel's reported size gives (core/observed.ts).
      const own = cmd === current.cmd;
      const removed = own ? current.removed : cmd.unmapped ? [kernelRange(cmd.iova, cmd.size, cmd.unmapped)] : [];
      const carriedOut = own ? current.ok : true;
      const caller = cmd.caller ?? UNKNOWN_CALLER;
      const touched = new Map<number, LiveMap>();
      for (const r of removed) for (const m of mapsIn(r.start, r.end - r.start)) touched.set(m.position, m);
      const inside = (m: LiveMap, g: LiveMap) => g.iova <= m.iova && m.iova + m.size <= g.iova + g.size;
      // (A region that another one holds goes with it: a map made in a hole of a map cut before.)
      const whole = [...touched.values()]
        .filter((m) => ![...touched.values()].some((g) => g !== m && inside(m, g) && !(inside(g, m) && g.position < m.position)))
        .sort((x, y) => (x.iova < y.iova ? -1 : x.iova > y.iova ? 1 : 0));
      // Each whole region must hold only this caller's maps (a map inferred from before the
      // trace is nobody's), each inside it (strict unmap refuses an unmap that cuts a mapping):
      // otherwise this is not a stepping caller's teardown, and the unmap is kept as it is and flagged.
      const mine = (m: LiveMap) => (m.caller ?? UNKNOWN_CALLER) === caller || m.caller === BEFORE_TRACE_CALLER;
      const bad = whole.flatMap((g) => mapsIn(g.iova, g.size).filter((m) => !mine(m) || !inside(m, g)))[0];
      if (bad) {
        uam.flagged++;
        const pages = removed.map((r) => `${hex(r.start)}+${formatSize(r.end - r.start)}`).join(', ');
        const why = !mine(bad)
          ? `${mapText({ ref: bad.position, iova: bad.iova, size: bad.size })}, another caller's`
          : `${mapText({ ref: bad.position, iova: bad.iova, size: bad.size })}, which lies across the edge of a map to unmap whole`;
        report(
          `unmap ${hex(cmd.iova)}+${formatSize(cmd.size)} removed ${pages} in the source, which reaches ${why}: not a teardown of its own maps, kept as it is; ${strictText(cmd)}`,
        );
        return [asOut(cmd)];
      }
      const out: OutCommand[] = whole.map((m) => ({ op: 'unmap', iova: m.iova, size: m.size }));
      // Parts of the request the caller still believes mapped where nothing is (another caller
      // removed them): unmapped on their own, so that its intent ends there as in the source
      // (as split-maps does with holes; not where an unmap of nothing is an error).
      if (carriedOut && !st.profile.emptyUnmapErrno) {
        const req = [{ start: cmd.iova, end: cmd.iova + cmd.size }];
        const d = dst.peek(st.name);
        const taken = union(d ? norm(d.mappedIn(req[0]!)) : [], norm(whole.map((m) => ({ start: m.iova, end: m.iova + m.size }))));
        for (const h of within(st.migIntent.get(caller), subtract(req, taken))) {
          out.push({ op: 'unmap', iova: h.start, size: h.end - h.start });
          uam.holes++;
        }
      }
      if (whole.length) {
        uam.whole++;
        uam.maps += whole.length;
      } else if (removed.length) uam.droppedDone++;
      else uam.droppedNothing++;
      return out.sort((x, y) => (x.iova < y.iova ? -1 : x.iova > y.iova ? 1 : 0));
    },
  };
  return ctx;
}

/**
 * An unmap of [s, e) cut at the edges of its holes: one unmap per stretch of back-to-back maps,
 * and one for each part of a hole the caller still believes mapped. The legacy loop
 * (__iommu_unmap) and io-pgtable-arm stop at the first hole, so a single unmap across a gap would
 * leave the maps after it mapped on such hardware. Undefined when there is no hole (or nothing
 * mapped): the request can stay as it is.
 */
function alongMaps(s: bigint, e: bigint, maps: LiveMap[], intent: IntervalSet | undefined): OutCommand[] | undefined {
  if (!maps.length) return undefined;
  const stretches: Array<[bigint, bigint]> = [];
  for (const m of maps) {
    const a = m.iova > s ? m.iova : s;
    const b = m.iova + m.size < e ? m.iova + m.size : e;
    const last = stretches[stretches.length - 1];
    if (last && last[1] === a) last[1] = b;
    else stretches.push([a, b]);
  }
  if (stretches.length === 1 && stretches[0]![0] === s && stretches[0]![1] === e) return undefined;
  const out: OutCommand[] = [];
  // A hole is unmapped only where the caller still believes something is mapped (another caller
  // removed it): what it asked for stays asked, and nothing else is issued for nothing.
  const hole = (a: bigint, b: bigint) => {
    for (const r of within(intent, [{ start: a, end: b }])) out.push({ op: 'unmap', iova: r.start, size: r.end - r.start });
  };
  let cur = s;
  for (const [a, b] of stretches) {
    if (a > cur) hole(cur, a);
    out.push({ op: 'unmap', iova: a, size: b - a });
    cur = b;
  }
  if (cur < e) hole(cur, e);
  return out;
}
