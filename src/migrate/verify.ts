/**
 * The verification of a migration: the new ledger against its source, per caller and in total.
 *
 * While the new ledger is written (one pass), each source map and unmap is compared with what the
 * commands it became did there: (a) a map the source stored as ok that is refused, an unmap the
 * source carried out that is refused, (b) an unmap that removed something in the source and
 * removes nothing now. After it, from the stored projections of both ledgers (src/projections/
 * compare.ts): (c) the pages mapped at the end of each domain, (d) the faults, (e) what each
 * caller still believes mapped at the end. Every difference is a regression, named with the
 * source event that shows it and the new events made from it, unless it follows from a real fix
 * (below) or from a command kept as it is (`keep`: not migrated, not a failure).
 *
 * A real fix is a source unmap that over-unmapped (and whose caller did not step past the
 * collateral, core/stepping.ts), left pages of its request mapped, or was refused, and that the
 * migration changed so that the new ledger does exactly what was asked, with nothing regressing
 * at that event. A fix whose pages are part of a later regression (a map that collides with what
 * it kept mapped, a fault on what it unmapped) is withdrawn: it is not counted, and what
 * differs because of it is a regression.
 */
import { formatSize, hex, type Range } from '../core/address.js';
import type { Domain } from '../core/domain.js';
import { IntervalSet } from '../core/intervals.js';
import { intersect, norm, subtract } from './ranges.js';
import { EndReader, type IntentRange, type PageRange } from '../projections/compare.js';
import type { Outcome } from '../projections/ledger.js';
import type { FaultView, FindingView, Queries } from '../projections/queries.js';

/** Differences that fail the run. */
export type RegressionKind =
  | 'map-refused' // (a) a map the source stored as ok (or a map the migration adds) is refused
  | 'unmap-refused' // an unmap the source carried out is refused under strict unmap
  | 'unmap-empty' // (b) an unmap that removed something in the source removes nothing, and what it removed there is still mapped
  | 'unmap-early' // (b) an unmap removes pages the source still maps, and the source does not go on to remove them as the same teardown
  | 'end-mapped' // (c) mapped at the end of the domain in the new ledger only
  | 'end-unmapped' // (c) mapped at the end of the domain in the source only
  | 'end-moved' // (c) mapped in both at the end, to another physical address or with other permissions
  | 'fault-unmapped' // (d) a fault hits a page the new ledger has unmapped and the source had mapped
  | 'fault-mapped' // (d) a fault hits a page the new ledger has mapped and the source had unmapped
  | 'intent-added' // (e) a caller believes a range mapped at the end in the new ledger only
  | 'intent-lost' // (e) ... in the source only
  | 'over-unmap' // an unmap of the new ledger removes pages outside its request
  | 'left-mapped' // an unmap of the new ledger leaves part of its request mapped
  | 'flagged'; // an asymmetric unmap a `flag` rule kept as it is

/** Findings that do not fail the run. */
export type InfoKind =
  | 'fixed' // a real fix (see above)
  | 'withdrawn' // a fix that a later regression shows was none
  | 'fix-effect' // a difference that follows from a fix (pages it kept or removed, a map that no longer collides, a fault that now hits a mapped page)
  | 'not-migrated' // a regression of a command kept as it is (`keep`: no rule, or outside --caller)
  | 'refused-in-source'; // refused in both histories

export type ProblemKind = RegressionKind | InfoKind;

/** The regression kinds, in the order of the checks (the report lists them so). */
export const REGRESSION_ORDER: readonly RegressionKind[] = [
  'map-refused',
  'unmap-empty',
  'unmap-refused',
  'unmap-early',
  'end-mapped',
  'end-unmapped',
  'end-moved',
  'fault-unmapped',
  'fault-mapped',
  'intent-added',
  'intent-lost',
  'flagged',
  'over-unmap',
  'left-mapped',
];

export const REGRESSIONS: ReadonlySet<ProblemKind> = new Set<RegressionKind>(REGRESSION_ORDER);

/** Kinds that fail the verification. */
export const FAILING = REGRESSIONS;

export interface Problem {
  kind: ProblemKind;
  /** For `not-migrated`: the regression it would be. */
  was?: RegressionKind;
  /** The source event that shows it. */
  position: number;
  /** The first and last event of the new ledger made from it (none: it was dropped, or made nothing). */
  migratedPosition?: number;
  migratedLast?: number;
  domain: string;
  caller: string;
  site: string;
  strategy: string;
  ranges: Array<{ iova: bigint; size: bigint }>;
  bytes: bigint;
  detail: string;
}

export type FixKind = 'over-unmap' | 'left-mapped' | 'refused';

export interface CallerTotals {
  domain: string;
  caller: string;
  /** Regressions per kind (problems; for end state and intent, ranges). */
  regressions: Partial<Record<RegressionKind, number>>;
  /** Bytes of the end-state and intent regressions. */
  bytes: Partial<Record<RegressionKind, bigint>>;
  fixed: number;
  notMigrated: number;
}

export interface Verification {
  problems: Problem[];
  /** Problems of each kind (the list keeps the first MAX_LISTED of each). */
  counts: Partial<Record<ProblemKind, number>>;
  /** Bytes per kind, where a kind measures bytes (end state, intent, fixes). */
  bytes: Partial<Record<ProblemKind, bigint>>;
  /** Regressions of kept commands (not-migrated), per the regression they would be. */
  notMigrated: Partial<Record<RegressionKind, number>>;
  /** Real fixes per kind (withdrawn ones excluded). */
  fixed: Record<FixKind, number>;
  byCaller: CallerTotals[];
  /** Unmaps that removed pages before the source did, all of which the same caller's following unmaps removed in the source (a teardown), and those bytes. */
  caughtUp: { unmaps: number; bytes: bigint };
  passed: boolean;
}

const MAX_LISTED = 1000;

/** A command the migration issued for a source command, with its outcome in the new ledger. */
export interface Issued {
  op: 'map' | 'unmap';
  iova: bigint;
  size: bigint;
  caller: string;
  /** A map that puts back part of a map (widen-unmaps): the source position of that map. */
  backOf?: number;
  r: Outcome;
}

/** A source map or unmap, as the verification needs it. */
export interface SourceEvent {
  position: number;
  domain: string;
  caller: string;
  site: string;
  strategy: string;
  op: 'map' | 'unmap';
  iova: bigint;
  size: bigint;
  /** As stored in the source: carried out, bytes removed (unmaps; observed when imported). */
  ok: boolean;
  errno?: string;
  unmapped: bigint;
  /** A `flag` rule reported it. */
  flagged: boolean;
  /** Unmaps: the pages the source's unmap removed (from the source model, which folds as the source ledger did). */
  removed?: Range[];
  /** Pages the commands it became removed outside its request that the source still maps after it. */
  early?: Range[];
}

/**
 * Pages an unmap of the new ledger removed before the source did (unmap-as-mapped unmaps the
 * whole map at the first step of a teardown). They must go in the source by the same caller's
 * following unmaps, before anything else touches them and before that caller unmaps elsewhere.
 */
interface EarlyCase {
  position: number;
  domain: string;
  caller: string;
  /** Still mapped in the source, not in the new ledger. */
  pages: Range[];
  /** What the new ledger unmapped at `position`: the caller's unmaps inside it continue the teardown. */
  span: Range[];
  /** The bytes of `pages` at first. */
  bytes: bigint;
}

interface Fix {
  kind: FixKind;
  position: number;
  domain: string;
  caller: string;
  site: string;
  strategy: string;
  ranges: Range[];
  detail: string;
  withdrawn?: string;
}

const rangeText = (r: { iova: bigint; size: bigint }) => `${hex(r.iova)}+${formatSize(r.size)}`;
const rtext = (r: Range) => `${hex(r.start)}+${formatSize(r.end - r.start)}`;
const asRanges = (rs: readonly Range[]) => rs.map((r) => ({ iova: r.start, size: r.end - r.start }));
const sumBytes = (rs: readonly Range[]) => rs.reduce((a, r) => a + (r.end - r.start), 0n);

/** Grows with the positions it is given (new-ledger positions are not known in advance). */
class PositionMap {
  a = new Int32Array(1024);
  set(i: number, v: number): void {
    if (i >= this.a.length) {
      let n = this.a.length;
      while (n <= i) n *= 2;
      const b = new Int32Array(n);
      b.set(this.a);
      this.a = b;
    }
    this.a[i] = v;
  }
  get(i: number): number | undefined {
    const v = i < this.a.length ? this.a[i]! : 0;
    return v === 0 ? undefined : v;
  }
}

export class Verifier {
  private readonly findings = new Map<number, FindingView>();
  private readonly labels: string[] = [];
  private readonly labelIdx = new Map<string, number>();
  private readonly names: string[] = [''];
  private readonly nameIdx = new Map<string, number>([['', 0]]);
  private readonly strategyOf = new PositionMap();
  private readonly callerOf = new PositionMap();
  private readonly siteOf = new PositionMap();
  private readonly domainOf = new PositionMap();
  private readonly firstNew = new PositionMap();
  private readonly lastNew = new PositionMap();
  private readonly newToSrc = new PositionMap();
  private readonly fixes = new Map<number, Fix>();
  /** Events whose differences follow from a fix: maps that no longer collide with what a fix removed. */
  private readonly fixEffects = new Set<number>();
  /** Per domain: where a fix made the histories differ, until a later command touches it (value: the fix). */
  private readonly fixRanges = new Map<string, IntervalSet>();
  private readonly destroyedAt = new Map<string, { src?: number; out?: number }>();
  /** Per domain: early removals not yet caught up with by the source. */
  private readonly early = new Map<string, EarlyCase[]>();
  /** Early removals the source caught up with (the same caller's following unmaps removed every page), and their bytes. */
  private readonly caughtUp = { unmaps: 0, bytes: 0n };
  private readonly domainOrder: string[] = [];
  readonly problems: Problem[] = [];
  readonly counts: Partial<Record<ProblemKind, number>> = {};
  readonly bytes: Partial<Record<ProblemKind, bigint>> = {};
  readonly notMigrated: Partial<Record<RegressionKind, number>> = {};
  private readonly byCaller = new Map<string, CallerTotals>();

  /**
   * `stepText` words a source finding's stepped/harmful verdict in the details (the CLI gives its
   * own, cli/render/verdicts.ts); without it, a detail names the over-unmap and not its verdict.
   */
  constructor(
    private readonly src: Queries,
    private readonly stepText: (f: FindingView) => string | undefined = () => undefined,
  ) {
    for (const f of src.findings()) this.findings.set(f.position, f);
  }

  private idx(list: string[], map: Map<string, number>, v: string): number {
    let i = map.get(v);
    if (i === undefined) {
      i = list.length;
      list.push(v);
      map.set(v, i);
    }
    return i;
  }

  /** Records a source event (its domain, caller, site, strategy), before its new events are appended. */
  sourceEvent(position: number, domain: string, caller: string, site: string, strategy: string): void {
    this.strategyOf.set(position, this.idx(this.labels, this.labelIdx, strategy) + 1);
    this.callerOf.set(position, this.idx(this.names, this.nameIdx, caller));
    this.siteOf.set(position, this.idx(this.names, this.nameIdx, site));
    this.domainOf.set(position, this.idx(this.names, this.nameIdx, domain));
  }

  domainCreated(domain: string): void {
    this.fixRanges.set(domain, new IntervalSet());
    this.domainOrder.push(domain);
  }

  /** A new-ledger event made from the source event at `source`. */
  made(newPosition: number, source: number): void {
    this.newToSrc.set(newPosition, source);
    if (this.firstNew.get(source) === undefined) this.firstNew.set(source, newPosition);
    this.lastNew.set(source, newPosition);
  }

  destroyed(domain: string, srcPosition: number, newPosition: number): void {
    this.destroyedAt.set(domain, { src: srcPosition, out: newPosition });
    // What is still open shows at the end of the domain (check 3: missing at the end).
    this.early.delete(domain);
  }

  private strategy(p: number): string {
    const i = this.strategyOf.get(p);
    return i === undefined ? 'copy' : this.labels[i - 1]!;
  }
  private caller(p: number): string {
    return this.names[this.callerOf.get(p) ?? 0]!;
  }
  private site(p: number): string {
    return this.names[this.siteOf.get(p) ?? 0]!;
  }

  /** "#5 (new #6)", "#5 (new #6-#8)", "#5 (nothing in the new ledger)". */
  ref(p: number): string {
    const a = this.firstNew.get(p);
    const b = this.lastNew.get(p);
    if (a === undefined) return `#${p} (nothing in the new ledger)`;
    return a === b ? `#${p} (new #${a})` : `#${p} (new #${a}-#${b})`;
  }

  /** A new-ledger position, with the source event it was made from ("new #3, made from #2"; to be put in brackets). */
  newRef(n: number): string {
    const s = this.newToSrc.get(n);
    return s === undefined ? `new #${n}` : `new #${n}, made from #${s}`;
  }

  /** A core reason names maps by their new position ('#35'): say the source's too. */
  reasonRefs(reason: string | undefined): string {
    return (reason ?? '').replace(/#(\d+)/g, (m, n: string) => {
      const s = this.newToSrc.get(Number(n));
      return s === undefined ? m : `#${s}, new #${n}`;
    });
  }

  private totals(domain: string, caller: string): CallerTotals {
    const k = `${domain}\0${caller}`;
    let t = this.byCaller.get(k);
    if (!t) this.byCaller.set(k, (t = { domain, caller, regressions: {}, bytes: {}, fixed: 0, notMigrated: 0 }));
    return t;
  }

  private add(p: Omit<Problem, 'detail'> & { detail: string | (() => string) }): void {
    let q = p;
    if (REGRESSIONS.has(p.kind) && p.kind !== 'flagged' && p.strategy === 'keep') {
      q = { ...p, kind: 'not-migrated', was: p.kind as RegressionKind };
      this.notMigrated[p.kind as RegressionKind] = (this.notMigrated[p.kind as RegressionKind] ?? 0) + 1;
      this.totals(p.domain, p.caller).notMigrated++;
    } else if (REGRESSIONS.has(p.kind)) {
      const t = this.totals(p.domain, p.caller);
      const k = p.kind as RegressionKind;
      t.regressions[k] = (t.regressions[k] ?? 0) + 1;
      if (k.startsWith('end-') || k.startsWith('intent-')) t.bytes[k] = (t.bytes[k] ?? 0n) + p.bytes;
    }
    const n = (this.counts[q.kind] = (this.counts[q.kind] ?? 0) + 1);
    if (q.kind !== 'not-migrated' && q.kind !== 'refused-in-source') this.bytes[q.kind] = (this.bytes[q.kind] ?? 0n) + q.bytes;
    const first = this.firstNew.get(q.position);
    const last = this.lastNew.get(q.position);
    if (n <= MAX_LISTED) {
      // Details are made for listed problems only (a kept history can have hundreds of thousands).
      const detail = typeof q.detail === 'function' ? q.detail() : q.detail;
      const was = q.kind === 'not-migrated' && q.was ? `${q.was}: ` : '';
      this.problems.push({
        ...q,
        detail: was + detail,
        ...(first !== undefined ? { migratedPosition: first } : {}),
        ...(last !== undefined && last !== first ? { migratedLast: last } : {}),
      });
    }
  }

  /**
   * A problem at a source event; its caller, site and strategy are those recorded for the event
   * `by` (by default the same one: a fault takes them from the command that made its page differ).
   */
  private at(p: number, kind: ProblemKind, domain: string, ranges: readonly Range[], detail: string | (() => string), caller?: string, by = p): void {
    const own = caller === undefined || caller === this.caller(by);
    this.add({
      kind,
      position: p,
      domain,
      caller: caller ?? this.caller(by),
      site: own ? this.site(by) : '',
      strategy: this.strategy(by),
      ranges: asRanges(ranges),
      bytes: sumBytes(ranges),
      detail,
    });
  }

  /** A flagged unmap (a `flag` rule): a regression, reported once. */
  flagged(e: { position: number; domain: string; caller: string; site: string; strategy: string; iova: bigint; size: bigint }, detail: string): void {
    this.add({
      kind: 'flagged',
      position: e.position,
      domain: e.domain,
      caller: e.caller,
      site: e.site,
      strategy: e.strategy,
      ranges: [{ iova: e.iova, size: e.size }],
      bytes: e.size,
      detail,
    });
  }

  private withdraw(domain: string, rs: readonly Range[], why: string): void {
    const set = this.fixRanges.get(domain);
    if (!set) return;
    for (const r of rs) {
      for (const iv of set.overlapping(r.start, r.end)) {
        const f = this.fixes.get(iv.value);
        if (f && !f.withdrawn) f.withdrawn = why;
      }
    }
  }

  /**
   * Checks (a) and (b) for one source map or unmap, once the commands it became are appended
   * (`live`: the new ledger's domain now), and finds whether it is a real fix.
   */
  command(e: SourceEvent, issued: readonly Issued[], live: Domain | undefined): void {
    const p = e.position;
    const request: Range = { start: e.iova, end: e.iova + e.size };
    const fixSet = this.fixRanges.get(e.domain)!;
    const regressions: Array<{ kind: RegressionKind; ranges: Range[]; detail: () => string; caller?: string }> = [];
    const refusedMaps = issued.filter((o) => o.op === 'map' && !o.r.ok);
    const refusedUnmaps = issued.filter((o) => o.op === 'unmap' && !o.r.ok);
    const unmaps = issued.filter((o) => o.op === 'unmap');
    const of = (o: Issued) => `${o.op} ${hex(o.iova)}+${formatSize(o.size)}`;
    const range = (o: Issued): Range => ({ start: o.iova, end: o.iova + o.size });
    const caught = this.catchUp(e, request, issued.map(range));

    if (refusedMaps.length) {
      const o = refusedMaps[0]!;
      const why = () => `${o.r.errno}: ${this.reasonRefs(o.r.reason)}`;
      const pieces = issued.filter((x) => x.op === 'map').length;
      const which = pieces > 1 ? ` (${refusedMaps.length} of its ${pieces} maps; the first: ${of(o)})` : '';
      if (e.op === 'map' && !e.ok) {
        this.at(p, 'refused-in-source', e.domain, refusedMaps.map(range), () => `map ${rtext(request)} is refused in both histories${which}: ${why()}`);
      } else if (e.op === 'map') {
        regressions.push({
          kind: 'map-refused',
          ranges: refusedMaps.map(range),
          detail: () => `map ${rtext(request)} is refused in the new ledger${which}: ${why()}; the source stored it as ok`,
        });
      } else {
        const back = o.backOf !== undefined ? ` (part of #${o.backOf} mapped back)` : '';
        regressions.push({
          kind: 'map-refused',
          ranges: refusedMaps.map(range),
          detail: () => `${of(o)}${back}, issued for unmap ${rtext(request)}, is refused: ${why()}`,
          caller: o.caller,
        });
      }
    }
    if (refusedUnmaps.length && !e.flagged) {
      const o = refusedUnmaps[0]!;
      const why = () => `${o.r.errno}: ${this.reasonRefs(o.r.reason)}`;
      const which = unmaps.length > 1 ? ` (${refusedUnmaps.length} of its ${unmaps.length} unmaps; the first: ${of(o)})` : '';
      if (e.op === 'unmap' && !e.ok)
        this.at(p, 'refused-in-source', e.domain, [request], () => `unmap ${rtext(request)} is refused in both histories${which}: ${why()}`);
      else
        regressions.push({
          kind: 'unmap-refused',
          ranges: refusedUnmaps.map(range),
          detail: () => `unmap ${rtext(request)} is refused under strict unmap${which}: ${why()}; the source carried it out`,
        });
    }
    let removed = 0n;
    for (const o of unmaps) if (o.r.ok) removed += o.r.unmapped ?? 0n;
    // Not when the new ledger had already removed every page the source removed here, by an
    // earlier unmap of the same caller that went ahead of the source (an early removal the source
    // is catching up with): that removal is done. Pages still mapped, or never mapped, make it one.
    const done = caught.length > 0 && e.removed !== undefined && subtract(norm(e.removed), caught).length === 0;
    if (e.op === 'unmap' && e.unmapped > 0n && !refusedUnmaps.length && removed === 0n && !done) {
      const what =
        unmaps.length === 0
          ? 'is dropped (nothing is issued for it)'
          : `removes nothing in the new ledger${unmaps.length > 1 ? ` (${unmaps.length} unmaps)` : ''}`;
      regressions.push({
        kind: 'unmap-empty',
        ranges: [request],
        detail: () => `unmap ${rtext(request)} ${what}; the source removed ${formatSize(e.unmapped)}`,
      });
    }
    for (const o of unmaps) {
      if (!o.r.ok) continue;
      if (o.r.collateral?.length) {
        const rs = o.r.collateral.map((c) => ({ start: c.iova, end: c.iova + c.size }));
        regressions.push({ kind: 'over-unmap', ranges: rs, detail: () => `${of(o)} removes pages outside the request in the new ledger` });
      }
      if (o.r.leftMapped?.length)
        regressions.push({
          kind: 'left-mapped',
          ranges: o.r.leftMapped.map((l) => ({ start: l.start, end: l.end })),
          detail: () => `${of(o)} leaves part of the request mapped in the new ledger`,
        });
    }
    for (const g of regressions) {
      // (A kept command's regression is out of scope: it withdraws no fix.)
      if (e.strategy !== 'keep') this.withdraw(e.domain, g.ranges, `${g.kind} at ${this.ref(p)}`);
      this.at(p, g.kind, e.domain, g.ranges, g.detail, g.caller);
    }
    if (e.early?.length) {
      const span = norm(unmaps.filter((o) => o.r.ok).map(range));
      let list = this.early.get(e.domain);
      if (!list) this.early.set(e.domain, (list = []));
      const pages = norm(e.early);
      list.push({ position: p, domain: e.domain, caller: e.caller, pages, span, bytes: sumBytes(pages) });
    }

    // A map the source refused succeeds where a fix removed what it collided with.
    if (e.op === 'map' && !e.ok && !refusedMaps.length) {
      const by = fixSet
        .overlapping(request.start, request.end)
        .map((iv) => this.fixes.get(iv.value))
        .find((f) => f && !f.withdrawn);
      if (by) {
        this.fixEffects.add(p);
        const why = by.kind === 'refused' ? `the source had refused to let unmap #${by.position} remove` : `unmap #${by.position} left mapped`;
        this.at(p, 'fix-effect', e.domain, [request], `map ${rtext(request)} succeeds; in the source it collided with pages that ${why} (fixed)`);
      }
    }

    // A later command over a fix's pages ends the difference it made there.
    const touched: Range[] = [request, ...issued.map(range)];
    const finding = e.op === 'unmap' ? this.findings.get(p) : undefined;
    for (const c of finding?.collateral ?? []) touched.push({ start: c.iova, end: c.iova + c.size });
    for (const r of touched) if (r.end > r.start) fixSet.subtract(r.start, r.end);

    // A real fix: the new ledger does exactly what was asked where the source did not. (Not for
    // commands kept as they are: out of scope, whatever strict unmap does with them.)
    if (e.op !== 'unmap' || regressions.length || e.strategy === 'keep' || !live) return;
    if (issued.some((o) => !o.r.ok)) return;
    const mapped = (r: { iova: bigint; size: bigint }) => sumBytes(live.mappedIn({ start: r.iova, end: r.iova + r.size }));
    let fix: Fix | undefined;
    const base = { position: p, domain: e.domain, caller: e.caller, site: e.site, strategy: e.strategy };
    if (!e.ok) {
      if (removed > 0n)
        fix = {
          ...base,
          kind: 'refused',
          ranges: [request],
          detail: `unmap ${rtext(request)} was refused in the source (${e.errno ?? 'refused'}); the new ledger removes ${formatSize(removed)} as asked`,
        };
    } else if (finding && finding.collateral.length) {
      const stepped = finding.stepped === true;
      if (!stepped && finding.collateral.every((c) => mapped(c) === c.size)) {
        const kept = finding.collateral.map((c) => ({ start: c.iova, end: c.iova + c.size }));
        fix = {
          ...base,
          kind: 'over-unmap',
          ranges: kept,
          detail: `unmap ${rtext(request)} over-unmapped ${finding.collateral.map(rangeText).join(', ')} in the source; the new ledger removes only what was asked and keeps those pages mapped`,
        };
      }
    } else if (finding && finding.leftMapped.length && finding.leftMapped.every((l) => mapped(l) === 0n)) {
      const left = finding.leftMapped.map((l) => ({ start: l.iova, end: l.iova + l.size }));
      fix = {
        ...base,
        kind: 'left-mapped',
        ranges: left,
        detail: `unmap ${rtext(request)} left ${finding.leftMapped.map(rangeText).join(', ')} mapped in the source; the new ledger unmaps it as asked`,
      };
    }
    if (!fix) return;
    this.fixes.set(p, fix);
    for (const r of fix.ranges) fixSet.add(r.start, r.end, p);
  }

  /**
   * The source catches up with the early removals of its domain at each command: the same
   * caller's unmap that removes their pages settles them (all gone: no difference left); one
   * inside what was unmapped continues the teardown; one elsewhere, or any other command that
   * reaches their pages, shows that the source still had them mapped for a reason: a regression.
   */
  private catchUp(e: SourceEvent, request: Range, issued: Range[]): Range[] {
    const open = this.early.get(e.domain);
    if (!open?.length) return [];
    const srcRemoved = e.removed ?? [];
    // What the source removes here that the same caller's early removals had already removed.
    const caught: Range[] = [];
    const asked = norm([request, ...srcRemoved]);
    const reach = norm([request, ...srcRemoved, ...issued]);
    this.early.set(
      e.domain,
      open.filter((c) => {
        if (e.op === 'unmap' && e.caller === c.caller) {
          caught.push(...intersect(c.pages, srcRemoved));
          c.pages = subtract(c.pages, srcRemoved);
          if (!c.pages.length) {
            this.caughtUp.unmaps++;
            this.caughtUp.bytes += c.bytes;
            return false;
          }
          if (intersect(c.span, asked).length) return true;
          this.earlyRegression(c, `${c.caller}'s next unmap, ${rtext(request)} at ${this.ref(e.position)}, went elsewhere`);
          return false;
        }
        if (!intersect(c.pages, reach).length) return true;
        this.earlyRegression(c, `the ${e.op} ${rtext(request)} by ${e.caller} at ${this.ref(e.position)} reached them`);
        return false;
      }),
    );
    return norm(caught);
  }

  private earlyRegression(c: EarlyCase, why: string): void {
    const { position: p, domain, pages, span } = c;
    if (this.strategy(p) !== 'keep') this.withdraw(domain, pages, `unmap-early at ${this.ref(p)}`);
    this.at(
      p,
      'unmap-early',
      domain,
      pages,
      () =>
        `${this.ref(p)} removed ${pages.map(rtext).join(', ')} in the new ledger (it unmapped ${span.map(rtext).join(', ')}), which the source still mapped when ${why}: removed too early, not a teardown`,
    );
  }

  private isFix(p: number | undefined): boolean {
    if (p === undefined) return false;
    const f = this.fixes.get(p);
    return (f !== undefined && !f.withdrawn) || this.fixEffects.has(p);
  }

  /**
   * The comparisons after the pass, from both ledgers' stored projections: faults, then the pages
   * and the intent at the end of each domain. `out` is the new ledger (committed).
   */
  finish(out: Queries, srcLast: number, outLast: number): Verification {
    const se = new EndReader(this.src);
    const oe = new EndReader(out);
    this.compareFaults(out);
    for (const domain of this.domainOrder) {
      const d = this.destroyedAt.get(domain);
      const sAt = d?.src !== undefined ? d.src - 1 : srcLast;
      const oAt = d?.out !== undefined ? d.out - 1 : outLast;
      this.comparePages(domain, se, oe, sAt, oAt);
      this.compareIntent(domain, se, oe, sAt, oAt);
    }
    // Fixes, once every regression has had its chance to withdraw one.
    const fixed: Record<FixKind, number> = { 'over-unmap': 0, 'left-mapped': 0, refused: 0 };
    for (const f of [...this.fixes.values()].sort((a, b) => a.position - b.position)) {
      if (f.withdrawn) {
        this.at(f.position, 'withdrawn', f.domain, f.ranges, `${f.detail}; not a fix: ${f.withdrawn} touches those pages`);
        continue;
      }
      fixed[f.kind]++;
      this.totals(f.domain, f.caller).fixed++;
      this.at(f.position, 'fixed', f.domain, f.ranges, f.detail);
    }
    this.problems.sort((a, b) => a.position - b.position);
    const passed = [...REGRESSIONS].every((k) => !this.counts[k]);
    return {
      problems: this.problems,
      counts: this.counts,
      bytes: this.bytes,
      notMigrated: this.notMigrated,
      fixed,
      byCaller: [...this.byCaller.values()].filter((t) => Object.keys(t.regressions).length || t.fixed || t.notMigrated),
      caughtUp: this.caughtUp,
      passed,
    };
  }

  /** (d): each fault, on a mapped page or not, in both ledgers (the faults projection of each). */
  private compareFaults(out: Queries): void {
    const srcFaults = new Map<number, FaultView>();
    for (const f of this.src.faults()) srcFaults.set(f.position, f);
    for (const nf of out.faults()) {
      const p = this.newToSrc.get(nf.position);
      const sf = p === undefined ? undefined : srcFaults.get(p);
      if (p === undefined || !sf) continue;
      const srcMapped = sf.cause === 'mapped';
      const outMapped = nf.cause === 'mapped';
      if (srcMapped === outMapped) continue;
      const mappedBy = (f: FaultView) => (typeof f.detail.mappedBy === 'number' ? f.detail.mappedBy : undefined);
      const srcEvent = srcMapped ? mappedBy(sf) : sf.causePosition;
      const outNew = outMapped ? mappedBy(nf) : nf.causePosition;
      const outEvent = outNew === undefined ? undefined : this.newToSrc.get(outNew);
      const cause = Math.max(srcEvent ?? 0, outEvent ?? 0) || undefined;
      const page = [{ start: sf.iova, end: sf.iova + 1n }];
      const where = `the fault at ${hex(sf.iova)}${sf.device ? ` from ${sf.device}` : ''} hits a page`;
      const how = (f: FaultView, at: string) => `${f.cause.replace(/-/g, ' ')}${at}`;
      const text = srcMapped
        ? `${where} the new ledger has unmapped (${how(nf, outNew !== undefined ? ` at ${this.newRef(outNew)}` : '')}) and the source had mapped (map #${srcEvent ?? '?'})`
        : `${where} the new ledger has mapped (map ${outNew !== undefined ? this.newRef(outNew) : '?'}) and the source had unmapped (${how(sf, sf.causePosition !== undefined ? ` at #${sf.causePosition}` : '')})`;
      const domain = sf.domain;
      const by = cause ?? p;
      if (!srcMapped && sf.cause === 'use-after-collateral-unmap' && this.isFix(cause)) {
        this.at(p, 'fix-effect', domain, page, `${text}: the fix at #${cause} keeps it mapped`, undefined, by);
        continue;
      }
      const kind: RegressionKind = srcMapped ? 'fault-unmapped' : 'fault-mapped';
      // A fix whose pages the device reaches differently was none (unless a kept command made them differ).
      if (this.strategy(by) !== 'keep') {
        const f = cause !== undefined ? this.fixes.get(cause) : undefined;
        if (f && !f.withdrawn) f.withdrawn = `${kind} at ${this.ref(p)}`;
        this.withdraw(domain, page, `${kind} at ${this.ref(p)}`);
      }
      this.at(
        p,
        kind,
        domain,
        page,
        `${text}${cause !== undefined && cause !== p ? `; the pages differ since ${this.ref(cause)}` : ''}${this.causeNote(cause)}`,
        undefined,
        by,
      );
    }
  }

  /** What the source's unmap at p did, for a detail ("#5 over-unmapped 2044K in the source, ..."). */
  /** What explains a difference: the later of the source's event and the source event the new ledger's came from. */
  private causeOf(srcEvent: number | undefined, outNew: number | undefined): number | undefined {
    const outEvent = outNew === undefined ? undefined : this.newToSrc.get(outNew);
    return Math.max(srcEvent ?? 0, outEvent ?? 0) || undefined;
  }

  private causeNote(p: number | undefined): string {
    if (p === undefined) return '';
    const f = this.findings.get(p);
    if (!f || !f.collateral.length) return '';
    const bytes = f.collateral.reduce((a, c) => a + c.size, 0n);
    const words = this.stepText(f);
    const stepped = words ? ` (${words})` : '';
    return `; in the source, #${p} over-unmapped ${formatSize(bytes)}${stepped}`;
  }

  /** (c): the pages each ledger maps at the end of the domain. */
  private comparePages(domain: string, se: EndReader, oe: EndReader, sAt: number, oAt: number): void {
    const a = se.pagesAt(domain, sAt);
    const b = oe.pagesAt(domain, oAt);
    type Piece = { kind: 'end-mapped' | 'end-unmapped' | 'end-moved'; start: bigint; end: bigint; s?: PageRange; o?: PageRange };
    const pieces: Piece[] = [];
    let i = 0;
    let j = 0;
    let cur = 0n;
    const push = (kind: Piece['kind'], start: bigint, end: bigint, s?: PageRange, o?: PageRange) => {
      const last = pieces[pieces.length - 1];
      if (last && last.kind === kind && last.end === start && last.s === s && last.o === o) last.end = end;
      else pieces.push({ kind, start, end, ...(s ? { s } : {}), ...(o ? { o } : {}) });
    };
    while (i < a.length || j < b.length) {
      const s = a[i];
      const o = b[j];
      const sStart = s ? (s.start > cur ? s.start : cur) : undefined;
      const oStart = o ? (o.start > cur ? o.start : cur) : undefined;
      const start = sStart === undefined ? oStart! : oStart === undefined ? sStart : sStart < oStart ? sStart : oStart;
      const sIn = s !== undefined && sStart === start;
      const oIn = o !== undefined && oStart === start;
      // The piece ends at the first edge after start.
      let end = sIn ? s.end : s ? s.start : 1n << 64n;
      const oEdge = oIn ? o.end : o ? o.start : 1n << 64n;
      if (oEdge < end) end = oEdge;
      if (sIn && oIn) {
        if (s.paddr + (start - s.start) !== o.paddr + (start - o.start) || s.prot !== o.prot) push('end-moved', start, end, s, o);
      } else if (sIn) push('end-unmapped', start, end, s);
      else if (oIn) push('end-mapped', start, end, undefined, o);
      cur = end;
      if (s && s.end <= cur) i++;
      if (o && o.end <= cur) j++;
    }
    // Pieces one event explains (same kind and cause), in IOVA order of their first piece.
    const groups = groupByCause(pieces, (pc) => {
      const srcEvent = pc.s ? pc.s.mapPos : se.lastRemoval(domain, pc.start, sAt);
      const outNew = pc.o ? pc.o.mapPos : oe.lastRemoval(domain, pc.start, oAt);
      return { cause: this.causeOf(srcEvent, outNew), note: { srcEvent, outNew } };
    });
    for (const g of groups) {
      const { first: pc, cause } = g;
      const where = `${domain}: ${g.ranges.map(rtext).join(', ')}`;
      const text =
        pc.kind === 'end-moved'
          ? `${where} is mapped at the end of both, to ${hex(pc.s!.paddr + (pc.start - pc.s!.start))} in the source (map #${pc.s!.mapPos}) and to ${hex(pc.o!.paddr + (pc.start - pc.o!.start))} in the new ledger (map ${this.newRef(pc.o!.mapPos)})`
          : pc.kind === 'end-mapped'
            ? `${where} is still mapped at the end of the new ledger (map ${this.newRef(pc.o!.mapPos)}${pc.o!.caller ? `, by ${pc.o!.caller}` : ''}), not in the source (${g.note.srcEvent !== undefined ? `removed by #${g.note.srcEvent}` : 'never mapped'})`
            : `${where} is mapped at the end of the source (map #${pc.s!.mapPos}${pc.s!.caller ? ` by ${pc.s!.caller}` : ''}), not in the new ledger (${g.note.outNew !== undefined ? `removed by ${this.newRef(g.note.outNew)}` : 'never mapped'})`;
      const shown = this.causeNote(cause);
      // A difference the latest event explains: a fix's effect, else a regression (not migrated when that event was kept as it is: add()).
      const blame = cause ?? pc.s?.mapPos ?? 0;
      if (this.isFix(cause))
        this.at(
          blame,
          'fix-effect',
          domain,
          g.ranges,
          `${text}: the fix at #${cause} ${pc.kind === 'end-mapped' ? 'keeps it mapped' : 'unmapped it as asked'}`,
        );
      else this.at(blame, g.kind, domain, g.ranges, `${text}${shown}`);
    }
  }

  /** (e): what each caller believes mapped at the end of the domain, in each ledger. */
  private compareIntent(domain: string, se: EndReader, oe: EndReader, sAt: number, oAt: number): void {
    const a = se.intentAt(domain, sAt);
    const b = oe.intentAt(domain, oAt);
    for (const caller of [...new Set([...a.keys(), ...b.keys()])].sort()) {
      const x = a.get(caller) ?? [];
      const y = b.get(caller) ?? [];
      type Piece = { kind: 'intent-added' | 'intent-lost'; start: bigint; end: bigint; has: IntentRange };
      const pieces: Piece[] = [];
      const diff = (p: IntentRange[], q: IntentRange[], kind: Piece['kind']) => {
        let k = 0;
        for (const r of p) {
          let cur = r.start;
          while (k < q.length && q[k]!.end <= cur) k++;
          let m = k;
          while (m < q.length && q[m]!.start < r.end) {
            if (q[m]!.start > cur) pieces.push({ kind, start: cur, end: q[m]!.start, has: r });
            if (q[m]!.end > cur) cur = q[m]!.end;
            m++;
          }
          if (cur < r.end) pieces.push({ kind, start: cur, end: r.end, has: r });
        }
      };
      diff(x, y, 'intent-lost');
      diff(y, x, 'intent-added');
      pieces.sort((p, q) => (p.start < q.start ? -1 : p.start > q.start ? 1 : 0));
      const groups = groupByCause(pieces, (pc) => {
        const added = pc.kind === 'intent-added';
        // The side that intends it: its map; the other: where its intent there ended.
        const srcEvent = added ? se.lastIntentEnd(domain, caller, pc.start, sAt) : pc.has.mapPos;
        const outNew = added ? pc.has.mapPos : oe.lastIntentEnd(domain, caller, pc.start, oAt);
        return { cause: this.causeOf(srcEvent, outNew), note: added ? srcEvent : outNew };
      });
      for (const g of groups) {
        const { first: pc, cause } = g;
        const what = `${caller} believes ${g.ranges.map(rtext).join(', ')} mapped at the end of ${domain}`;
        const text =
          pc.kind === 'intent-added'
            ? `${what} in the new ledger (map ${this.newRef(pc.has.mapPos)}), not in the source (${g.note !== undefined ? `its intent there ended at #${g.note}` : 'never intended'})`
            : `${what} in the source (map #${pc.has.mapPos}), not in the new ledger (${g.note !== undefined ? `its intent there ended at ${this.newRef(g.note)}` : 'never intended'})`;
        const blame = cause ?? pc.has.mapPos;
        if (this.isFix(cause)) this.at(blame, 'fix-effect', domain, g.ranges, `${text}: follows the fix at #${cause}`, caller);
        else this.at(blame, g.kind, domain, g.ranges, `${text}${this.causeNote(cause)}`, caller);
      }
    }
  }
}

/**
 * Pieces of a difference grouped by what explains them (the same kind and cause), each group's
 * ranges merged where they touch, in the IOVA order of each group's first piece. `explain` gives
 * a piece's cause and a note kept from the group's first piece.
 */
function groupByCause<P extends { kind: ProblemKind; start: bigint; end: bigint }, N>(
  pieces: readonly P[],
  explain: (pc: P) => { cause: number | undefined; note: N },
): Array<{ kind: P['kind']; cause: number | undefined; ranges: Range[]; first: P; note: N }> {
  const groups: Array<{ kind: P['kind']; cause: number | undefined; ranges: Range[]; first: P; note: N }> = [];
  const byKey = new Map<string, (typeof groups)[number]>();
  for (const pc of pieces) {
    const { cause, note } = explain(pc);
    const key = `${pc.kind} ${cause}`;
    const g = byKey.get(key);
    const last = g?.ranges[g.ranges.length - 1];
    if (last && last.end === pc.start) last.end = pc.end;
    else if (g) g.ranges.push({ start: pc.start, end: pc.end });
    else {
      const n = { kind: pc.kind, cause, ranges: [{ start: pc.start, end: pc.end }], first: pc, note };
      byKey.set(key, n);
      groups.push(n);
    }
  }
  return groups;
}
