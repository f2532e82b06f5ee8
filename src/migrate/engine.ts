/**
 * `migrate`: turns a recorded history into a symmetric one by a migration (define.ts), writes it
 * as a new ledger (the source is opened read-only), and verifies it while writing:
 *   1. under strict unmap, no command is refused and no unmap over-unmaps or leaves pages mapped;
 *   2. each caller's intent (its maps minus its own unmaps) is the same as in the source at every
 *      source position, and everything it intends is mapped — except where the source
 *      over-unmapped: those differences are the bugs fixed;
 *   3. the cost before and after (calls, pages written per level, table memory, invalidations).
 * Two passes over the source: the first finds where later unmaps cut each map (split-maps
 * needs to know when the map is issued); the second transforms, appends and checks.
 */
import { existsSync, rmSync } from 'node:fs';
import { formatSize, hex, type Range } from '../core/address.js';
import { Domain, type HwDelta, type MapResult, type UnmapResult } from '../core/domain.js';
import { IntervalSet } from '../core/intervals.js';
import { minPageSize, profileFromDescriptor, type Profile, type ProfileDescriptor } from '../core/profile.js';
import { classifyUnmap, SYMMETRIC, tryUnmap } from '../core/symmetry.js';
import { commandFromEvent, type StoredData } from '../events/recommand.js';
import { parseCommand, type Origin } from '../events/schema.js';
import { EventStore, type RawEvent } from '../events/store.js';
import { Ledger, UNKNOWN_CALLER, type Outcome } from '../projections/ledger.js';
import {
  MigrationError,
  ruleFor,
  type LiveMap,
  type Migration,
  type MigrationContext,
  type OutCommand,
  type SourceCommand,
} from './define.js';
import { intersect, norm, subtract, union, within, type Ranges } from './ranges.js';

export type ProblemKind =
  | 'rejected' // a command the source carried out is refused in the migrated history
  | 'over-unmap'
  | 'left-mapped'
  | 'flagged' // a command a `flag` rule kept as it is, and that is not symmetric
  | 'intent-changed' // a caller believes something else is mapped than in the source
  | 'lost' // a caller's intent is mapped in the source but not in the migrated history
  | 'bug-fixed' // the source lost (over-unmapped) something the migrated history keeps
  | 'unfixed' // both histories lose it (e.g. another caller unmaps it)
  | 'kept' // another caller's unmap removed it in the source, not in the migrated history
  | 'not-migrated' // out of scope (no rule, or --caller): kept as it is, not symmetric
  | 'rejected-in-source'; // refused in both histories

/** Kinds that fail the verification (unless the command was out of scope). */
export const FAILING: ReadonlySet<ProblemKind> = new Set(['rejected', 'over-unmap', 'left-mapped', 'flagged', 'intent-changed', 'lost']);

export interface Problem {
  kind: ProblemKind;
  /** The source event (and, when one is involved, the migrated event). */
  position: number;
  migratedPosition?: number;
  domain: string;
  caller: string;
  site: string;
  strategy: string;
  ranges: Array<{ iova: bigint; size: bigint }>;
  bytes: bigint;
  detail: string;
}

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
  problems: Problem[];
  /** Problems of each kind (the list keeps the first MAX_LISTED of each). */
  counts: Partial<Record<ProblemKind, number>>;
  /** The migrated commands under the source's own unmap behaviour (the hardware it ran on). */
  onSourceBehaviour: Record<string, { semantics: string; overUnmaps: number; overBytes: bigint; leftMapped: number; leftBytes: bigint }>;
  cost: Record<string, { before: Cost; after: Cost }>;
  passed: boolean;
}

export interface MigrateOptions {
  /** Only this caller's commands are transformed; the others are kept as they are. */
  caller?: string;
  onProgress?: (done: number, total: number) => void;
}

const MAX_LISTED = 1000;

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
  /** The source commands on the source's hardware and behaviour (the source as modelled). */
  src: Domain;
  /** The migrated commands on the source's hardware and behaviour. */
  chk: Domain;
  srcIntent: Map<string, IntervalSet<number>>;
  migIntent: Map<string, IntervalSet<number>>;
  /**
   * Ranges where the source differs from a symmetric history because of its own unmaps: what it
   * over-unmapped (until something is mapped there again), left mapped or refused to unmap
   * (value: that unmap).
   */
  zone: IntervalSet<number>;
  /** Differences already reported, per kind and caller (only new ones are listed). */
  known: Map<string, IntervalSet<number>>;
  /** Caller and site of each map alive in the migrated ledger, by its position there. */
  migInfo: Map<number, { caller: string; site: string; source: number }>;
  before: CostMeter;
  after: CostMeter;
  onSource: { overUnmaps: number; overBytes: bigint; leftMapped: number; leftBytes: bigint };
}

function data(ev: RawEvent): StoredData {
  return JSON.parse(ev.data) as StoredData;
}

/** Pass 1: for each map (by source position), the addresses inside it where later unmaps begin or end. */
function collectCuts(src: EventStore): Map<number, bigint[]> {
  const cuts = new Map<number, Set<bigint>>();
  const domains = new Map<string, { alive: IntervalSet<number>; maps: Map<number, { iova: bigint; end: bigint; pieces: number }>; minPage: bigint; spaceEnd: bigint }>();
  for (const ev of src.read()) {
    if (ev.type === 'domain-created') {
      const p = profileFromDescriptor((data(ev).body as { profile: ProfileDescriptor }).profile);
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
    const b = data(ev).body as { iova: string; size: string; paddr?: string };
    const iova = BigInt(b.iova);
    const size = BigInt(b.size);
    const end = iova + size;
    const aligned = size > 0n && iova % d.minPage === 0n && size % d.minPage === 0n && end <= d.spaceEnd;
    if (!aligned) continue;
    // The symmetric world: a map takes its range if it is free; an unmap frees exactly its request.
    if (ev.type === 'map') {
      if (BigInt(b.paddr!) % d.minPage !== 0n || d.alive.overlapping(iova, end).length) continue;
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
  for (const [k, s] of cuts) out.set(k, [...s].sort((a, b) => (a < b ? -1 : 1)));
  return out;
}

export async function migrate(source: string, outPath: string, m: Migration, o: MigrateOptions = {}): Promise<MigrationResult> {
  if (!existsSync(source)) throw new MigrationError(`no ledger at ${source}`);
  if (existsSync(outPath)) throw new MigrationError(`${outPath} exists: migrate writes a new ledger; choose another --out or remove it`);
  const src = new EventStore(source, { readonly: true });
  let dst: Ledger | undefined;
  try {
    if (o.caller !== undefined && !callerExists(src, o.caller)) throw new MigrationError(`--caller ${JSON.stringify(o.caller)}: no command in ${source} has that caller`);
    const cuts = collectCuts(src);
    dst = new Ledger(outPath);
    const result = await run(src, dst, cuts, m, o, source, outPath);
    dst.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('made-by', 'migrate'), ('migrated-from', ?), ('migration', ?)").run(source, m.name);
    dst.close();
    return result;
  } catch (e) {
    dst?.close();
    if (dst) for (const suffix of ['', '-wal', '-shm']) rmSync(outPath + suffix, { force: true });
    throw e;
  } finally {
    src.close();
  }
}

function callerExists(src: EventStore, caller: string): boolean {
  const r = src.db.prepare("SELECT 1 FROM events WHERE type IN ('map','unmap') AND json_extract(data, '$.who.caller') IS ? LIMIT 1").get(caller === UNKNOWN_CALLER ? null : caller);
  return r !== undefined;
}

async function run(src: EventStore, dst: Ledger, cuts: Map<number, bigint[]>, m: Migration, o: MigrateOptions, source: string, out: string): Promise<MigrationResult> {
  const total = src.lastPosition;
  const states = new Map<string, DState>();
  const problems: Problem[] = [];
  const counts: Partial<Record<ProblemKind, number>> = {};
  const strategies: Record<string, number> = {};
  const siteStrategies = new Map<string, { domain: string; caller: string; site: string; strategies: Record<string, number> }>();
  const costs: Record<string, { before: Cost; after: Cost }> = {};
  const onSourceBehaviour: MigrationResult['onSourceBehaviour'] = {};
  let sourceEvents = 0;

  const flagged = new Set<number>();
  const report = (p: Problem) => {
    // A flagged unmap is reported once, as flagged (with what strict unmap does to it).
    if (p.kind === 'flagged') flagged.add(p.position);
    else if (flagged.has(p.position) && (p.kind === 'rejected' || p.kind === 'over-unmap' || p.kind === 'left-mapped')) return;
    const kind: ProblemKind = p.strategy === 'keep' && FAILING.has(p.kind) && p.kind !== 'flagged' ? 'not-migrated' : p.kind;
    counts[kind] = (counts[kind] ?? 0) + 1;
    if ((counts[kind] ?? 0) <= MAX_LISTED) problems.push({ ...p, kind, detail: kind !== p.kind ? `${p.kind}: ${p.detail}` : p.detail });
  };

  await dst.sessionAsync(async (add) => {
    for (const ev of src.read()) {
      sourceEvents++;
      if (o.onProgress && sourceEvents % 32768 === 0) {
        o.onProgress(sourceEvents, total);
        await new Promise((r) => setImmediate(r)); // let a progress bar draw
      }
      const d = data(ev);
      // Where the source event came from (file and line), without the file digest: the ledger
      // derives ids from digest+line, and one source line may become several migrated commands.
      const srcFrom = (d.from as Origin | undefined) ?? {};
      const from: Origin = {
        ...(srcFrom.source !== undefined ? { source: srcFrom.source } : {}),
        ...(srcFrom.line !== undefined ? { line: srcFrom.line } : {}),
        derivedFrom: { position: ev.position, id: ev.id, strategy: 'copy' },
      };
      if (ev.type !== 'map' && ev.type !== 'unmap') {
        const cmd = commandFromEvent(ev, d, ev.type === 'domain-created' ? { semantics: 'strict' } : {}, false);
        add({ cmd: parseCommand(cmd), from });
        if (ev.type === 'domain-created') {
          const profile = profileFromDescriptor((d.body as { profile: ProfileDescriptor }).profile);
          states.set(ev.stream, {
            name: ev.stream,
            profile,
            src: new Domain(profile),
            chk: new Domain(profile),
            srcIntent: new Map(),
            migIntent: new Map(),
            zone: new IntervalSet(),
            known: new Map(),
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
        }
        continue;
      }
      const st = states.get(ev.stream);
      if (!st) throw new MigrationError(`source event ${ev.position}: domain ${ev.stream} has no domain-created event before it`);
      const who = (d.who ?? {}) as { caller?: string; site?: string; task?: string; pid?: number; tgid?: number; cpu?: number };
      const b = d.body as { iova: string; size: string; paddr?: string; prot?: number };
      const cmd: SourceCommand = {
        op: ev.type,
        position: ev.position,
        domain: ev.stream,
        iova: BigInt(b.iova),
        size: BigInt(b.size),
        ...(b.paddr !== undefined ? { paddr: BigInt(b.paddr), prot: b.prot ?? 3 } : {}),
        ...(who.caller !== undefined ? { caller: who.caller } : {}),
        ...(who.site !== undefined ? { site: who.site } : {}),
        ...(who.task !== undefined ? { task: who.task } : {}),
        ...(who.pid !== undefined ? { pid: who.pid } : {}),
        ...(ev.time ? { time: ev.time } : {}),
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
      const base = { position: ev.position, domain: st.name, caller, site, strategy: rule.label };

      // The source, as modelled: outcome, intent, over-unmapped zone, cost.
      const srcOk = applySource(st, cmd, caller);
      const touched: Range[] = [{ start: cmd.iova, end: cmd.iova + cmd.size }, ...srcOk.collateral];

      // The migration's commands for it.
      const ctx = contextFor(st, dst, cuts, (p) => report({ ...base, ...p }));
      let outs: OutCommand[];
      const asIs = [asOut(cmd)];
      if (rule.strategy === 'split-maps') outs = ctx.splitMaps(cmd);
      else if (rule.strategy === 'widen-unmaps') outs = ctx.widenUnmaps(cmd);
      else if (rule.strategy === 'flag') outs = ctx.flag(cmd);
      else if (rule.strategy === 'keep') outs = asIs;
      else {
        try {
          outs = rule.strategy(cmd, ctx);
        } catch (e) {
          throw new MigrationError(`${m.name}, ${rule.label}, source event ${ev.position}: the transform threw: ${(e as Error).message}`);
        }
        if (!Array.isArray(outs)) throw new MigrationError(`${m.name}, ${rule.label}, source event ${ev.position}: a transform returns an array of commands`);
      }

      outs.forEach((oc, k) => {
        const c: Record<string, unknown> = {
          op: oc.op,
          domain: st.name,
          iova: oc.iova,
          size: oc.size,
          ...(oc.op === 'map' ? { paddr: oc.paddr, prot: oc.prot ?? cmd.prot ?? 3 } : {}),
        };
        const ownCaller = oc.caller === undefined || oc.caller === cmd.caller;
        for (const [key, v] of Object.entries({ caller: oc.caller ?? cmd.caller, site: oc.site ?? (ownCaller ? cmd.site : undefined), time: cmd.time })) if (v !== undefined) c[key] = v;
        if (ownCaller) for (const key of ['task', 'pid', 'tgid', 'cpu'] as const) if (who[key] !== undefined) c[key] = who[key];
        let parsed;
        try {
          parsed = parseCommand(c);
        } catch (e) {
          throw new MigrationError(`${m.name}, ${rule.label}, source event ${ev.position}, command ${k + 1} it returned: ${(e as Error).message}`);
        }
        const hit = oc.op === 'unmap' ? ctx.mapsIn(oc.iova, oc.size) : [];
        const r = add({ cmd: parsed, from: { ...from, derivedFrom: { position: ev.position, id: ev.id, strategy: rule.label } } });
        const oCaller = (c.caller as string | undefined) ?? UNKNOWN_CALLER;
        touched.push({ start: oc.iova, end: oc.iova + oc.size });
        applyMigrated(st, oc, oCaller, (c.site as string | undefined) ?? '', r, srcOk, { ...base, caller: oCaller }, report, touched);
        // Forget the callers of maps that are gone (a map is gone when none of its pages is left).
        const live = dst.peek(st.name);
        for (const h of hit) if (!live || ![...live.runs(h.iova, h.iova + h.size)].some((x) => x.origin.ref === h.position)) st.migInfo.delete(h.position);
      });

      compareIntent(st, dst, norm(touched), base, report);
      // A map that succeeded in both histories over a range where they differed ends that difference.
      for (const z of srcOk.clearZone ?? []) st.zone.subtract(z.start, z.end);
    }
  });

  for (const s of states.values()) costs[s.name] = { before: s.before.finish(s.src), after: s.after.finish(s.chk) };
  for (const s of states.values()) onSourceBehaviour[s.name] = { semantics: s.profile.semantics, ...s.onSource };
  const passed = [...FAILING].every((k) => !counts[k]);
  return {
    source,
    out,
    migration: m.name,
    ...(o.caller !== undefined ? { scope: o.caller } : {}),
    sourceEvents,
    migratedEvents: dst.lastPosition,
    strategies,
    siteStrategies: [...siteStrategies.values()],
    problems,
    counts,
    onSourceBehaviour,
    cost: costs,
    passed,
  };
}

function asOut(c: SourceCommand): OutCommand {
  return c.op === 'map' ? { op: 'map', iova: c.iova, size: c.size, paddr: c.paddr!, prot: c.prot ?? 3 } : { op: 'unmap', iova: c.iova, size: c.size };
}

function intentOf(m: Map<string, IntervalSet<number>>, caller: string): IntervalSet<number> {
  let s = m.get(caller);
  if (!s) m.set(caller, (s = new IntervalSet()));
  return s;
}

/** What the source command did in the source model. */
interface SourceResult {
  ok: boolean;
  collateral: Range[];
  /** For a map: its whole range (the migration may issue it in pieces). */
  map?: Range;
  /** Ranges where both histories' maps succeeded, so they no longer differ (applied after the checks). */
  clearZone?: Range[];
}

/** Applies a source command to the source model. */
function applySource(st: DState, cmd: SourceCommand, caller: string): SourceResult {
  if (cmd.op === 'map') {
    const r = st.src.map({ iova: cmd.iova, paddr: cmd.paddr!, size: cmd.size, prot: cmd.prot ?? 3, ref: cmd.position });
    st.before.map(r, st.src);
    if (r.ok) intentOf(st.srcIntent, caller).add(cmd.iova, cmd.iova + cmd.size, cmd.position);
    return { ok: r.ok, collateral: [], map: { start: cmd.iova, end: cmd.iova + cmd.size } };
  }
  const r = st.src.unmap({ iova: cmd.iova, size: cmd.size });
  st.before.unmap(r, st.src);
  if (r.ok || r.unmappedSize > 0n) st.srcIntent.get(caller)?.subtract(cmd.iova, cmd.iova + cmd.size);
  // Where the source's state now differs from a symmetric history: over-unmapped, or left mapped.
  for (const c of r.collateral) st.zone.add(c.start, c.end, cmd.position);
  // (A refused unmap — strict, cutting a mapping — leaves its whole request mapped.)
  for (const l of r.leftMapped) st.zone.add(l.start, l.end, cmd.position);
  return { ok: r.ok, collateral: r.collateral.map((c) => ({ start: c.start, end: c.end })) };
}

type Report = (p: Problem) => void;
type Base = { position: number; domain: string; caller: string; site: string; strategy: string };

/** A core reason names maps by their migrated position ('#35'); say the source's too. */
function sourceRefs(st: DState, reason: string | undefined): string {
  return (reason ?? '').replace(/#(\d+)/g, (m, n: string) => {
    const info = st.migInfo.get(Number(n));
    return info ? `source #${info.source} (migrated #${n})` : m;
  });
}

function rangesOf(rs: readonly Range[]): { ranges: Problem['ranges']; bytes: bigint } {
  return { ranges: rs.map((r) => ({ iova: r.start, size: r.end - r.start })), bytes: rs.reduce((a, r) => a + (r.end - r.start), 0n) };
}

/** Check 1 for one migrated command, and the migrated models (intent, the source-behaviour run, cost). */
function applyMigrated(
  st: DState,
  oc: OutCommand,
  caller: string,
  site: string,
  r: Outcome,
  srcRes: SourceResult,
  base: Base,
  report: Report,
  touched: Range[],
): void {
  const start = oc.iova;
  const end = oc.iova + oc.size;
  const at = { ...base, migratedPosition: r.position! };
  if (oc.op === 'map') {
    const c = st.chk.map({ iova: oc.iova, paddr: oc.paddr!, size: oc.size, prot: oc.prot ?? 3, ref: r.position! });
    st.after.map(c, st.chk);
    const req = [{ start, end }];
    // A map issued in pieces differs from the source as a whole when the source's map collided:
    // the zone test and its extension take the source map's whole range.
    const whole = srcRes.map ?? { start, end };
    const z = st.zone.overlapping(whole.start, whole.end)[0];
    if (r.ok) {
      st.migInfo.set(r.position!, { caller, site, source: mappedBackFrom.get(oc) ?? base.position });
      intentOf(st.migIntent, caller).add(start, end, r.position!);
      if (srcRes.ok) (srcRes.clearZone ??= []).push({ start, end });
      else if (z) {
        // The source's map collided with pages one of its unmaps left mapped: the whole map differs.
        st.zone.add(whole.start, whole.end, z.value);
        report({ ...at, kind: 'bug-fixed', ...rangesOf(req), detail: `map ${hex(start)}+${formatSize(oc.size)} succeeds; in the source it collided with pages that unmap #${z.value} left mapped` });
      }
      return;
    }
    if (!srcRes.ok) report({ ...at, kind: 'rejected-in-source', ...rangesOf(req), detail: `map ${hex(start)}+${formatSize(oc.size)} is refused in both histories (${r.errno}: ${sourceRefs(st, r.reason)})` });
    else if (z) {
      st.zone.add(whole.start, whole.end, z.value);
      report({ ...at, kind: 'bug-fixed', ...rangesOf(req), detail: `map ${hex(start)}+${formatSize(oc.size)} only succeeded in the source because unmap #${z.value} had over-unmapped that range; symmetric, it collides (${r.errno}: ${sourceRefs(st, r.reason)})` });
    } else report({ ...at, kind: 'rejected', ...rangesOf(req), detail: `map ${hex(start)}+${formatSize(oc.size)} is refused: ${r.errno}: ${sourceRefs(st, r.reason)}` });
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
  for (const x of r.collateral ?? []) touched.push({ start: x.iova, end: x.iova + x.size });
  if (r.ok || (r.unmapped ?? 0n) > 0n) {
    st.migIntent.get(caller)?.subtract(start, end);
  }
  const req = [{ start, end }];
  if (!r.ok) {
    if (!srcRes.ok) report({ ...at, kind: 'rejected-in-source', ...rangesOf(req), detail: `unmap ${hex(start)}+${formatSize(oc.size)} is refused in both histories (${r.errno}: ${sourceRefs(st, r.reason)})` });
    else report({ ...at, kind: 'rejected', ...rangesOf(req), detail: `unmap ${hex(start)}+${formatSize(oc.size)} is refused under strict unmap: ${r.errno}: ${sourceRefs(st, r.reason)}` });
    return;
  }
  if (r.collateral?.length) {
    report({ ...at, kind: 'over-unmap', ...rangesOf(r.collateral.map((x) => ({ start: x.iova, end: x.iova + x.size }))), detail: `unmap ${hex(start)}+${formatSize(oc.size)} removes pages outside the request` });
  }
  if (r.leftMapped?.length) {
    report({ ...at, kind: 'left-mapped', ...rangesOf(r.leftMapped), detail: `unmap ${hex(start)}+${formatSize(oc.size)} leaves part of the request mapped` });
  }
}

function mappedIn(d: Domain, rs: Ranges): Ranges {
  return norm(rs.flatMap((r) => d.mappedIn(r)));
}

/** Check 2 on the ranges a source command (and what it became) touched; only new differences are reported. */
function compareIntent(st: DState, dst: Ledger, R: Ranges, base: Base, report: Report): void {
  const mig = dst.peek(st.name);
  if (!mig) return;
  const Mo = mappedIn(st.src, R);
  const Mm = mappedIn(mig, R);
  const zone = within(st.zone, R);
  const callers = new Set<string>();
  for (const [c, s] of st.srcIntent) if (within(s, R).length) callers.add(c);
  for (const [c, s] of st.migIntent) if (within(s, R).length) callers.add(c);
  for (const c of [...st.known.keys()].map((k) => k.slice(k.indexOf('\0') + 1))) callers.add(c);
  for (const c of callers) {
    const Io = within(st.srcIntent.get(c), R);
    const Im = within(st.migIntent.get(c), R);
    const diff = union(subtract(Io, Im), subtract(Im, Io));
    const both = intersect(Io, Im);
    const restored = intersect(subtract(both, Mo), Mm);
    const lost = intersect(subtract(both, Mm), Mo);
    const found: Array<[ProblemKind, Ranges, string]> = [
      ['intent-changed', subtract(diff, zone), `${c} believes a different range mapped than in the source`],
      // Where the source's own unmaps made it differ from a symmetric history, any difference is theirs.
      ['bug-fixed', intersect(union(union(diff, restored), lost), zone), `${c}: the source over-unmapped, left mapped or refused an unmap here; the migrated history does what was asked`],
      ['kept', subtract(restored, zone), `${c} means it mapped; the source had unmapped it at another caller's request, the migrated history keeps it (that unmap is refused or changed here)`],
      ['lost', subtract(lost, zone), `${c} still means it mapped and the source kept it, but the migrated history does not`],
      ['unfixed', subtract(subtract(both, Mo), Mm), `${c} still means it mapped, but neither history has it (another caller unmapped it)`],
    ];
    for (const [kind, rs, detail] of found) {
      const key = `${kind}\0${c}`;
      let known = st.known.get(key);
      const fresh = subtract(rs, within(known, R));
      if (rs.length || known) {
        if (!known) st.known.set(key, (known = new IntervalSet()));
        for (const r of R) known.subtract(r.start, r.end);
        for (const r of rs) known.add(r.start, r.end, base.position);
        if (known.size === 0) st.known.delete(key);
      }
      if (!fresh.length) continue;
      let why = detail;
      if (kind === 'bug-fixed') {
        const z = st.zone.overlapping(fresh[0]!.start, fresh[0]!.end)[0];
        if (z) why += ` (unmap #${z.value} in the source)`;
      }
      report({ ...base, caller: c, site: c === base.caller ? base.site : '', kind, ...rangesOf(fresh), detail: why });
    }
  }
}

/** A map that widen-unmaps issues to map back part of a map: the source position of that map. */
const mappedBackFrom = new WeakMap<OutCommand, number>();

/** What a transform may ask about the migrated history, and the built-in strategies. */
function contextFor(st: DState, dst: Ledger, cuts: Map<number, bigint[]>, report: (p: Omit<Problem, keyof Base>) => void): MigrationContext {
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
          const mapText = (o: { ref: number; iova: bigint; size: bigint }) => {
            const info = st.migInfo.get(o.ref);
            return `the map ${hex(o.iova)}+${formatSize(o.size)}${info ? ` (source #${info.source}, by ${info.caller})` : ''}`;
          };
          const what = foreign && SYMMETRIC.has(a.class) ? "removes another caller's mapping" : `${a.class} ${a.maps.map(mapText).join(', ')}`;
          const strict = tryUnmap(d!, cmd.iova, cmd.size, 'strict');
          const then = strict.errno ? `strict unmap refuses it (${strict.errno})` : strict.over ? `strict unmap removes ${formatSize(strict.over)} more` : 'strict unmap carries it out';
          report({ kind: 'flagged', ranges: [{ iova: cmd.iova, size: cmd.size }], bytes: cmd.size, detail: `${reason ?? `unmap ${hex(cmd.iova)}+${formatSize(cmd.size)} ${what}: kept as it is`}; ${then}` });
        }
      }
      return [asOut(cmd)];
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
function alongMaps(s: bigint, e: bigint, maps: LiveMap[], intent: IntervalSet<number> | undefined): OutCommand[] | undefined {
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
