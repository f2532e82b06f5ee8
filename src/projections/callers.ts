/**
 * The caller analysis (`callers`): per caller and call site, how its unmaps relate to the maps
 * alive at that moment, what they do under each unmap behaviour, the worst examples and what
 * to change. Read from the caller_symmetry and asymmetric_unmaps projections (no replay).
 */
import type Database from 'better-sqlite3';
import type { AnalysedBehaviour } from '../core/symmetry.js';
import type { SymmetryClass } from '../core/symmetry.js';
import { fromDb } from './codec.js';
import type { Tables } from './tables.js';

export interface BehaviourSummary {
  /** Unmaps that would remove pages outside the request, and those bytes. */
  overUnmaps: number;
  overBytes: bigint;
  /** Unmaps that would leave part of the request mapped, and those bytes. */
  leftMapped: number;
  leftBytes: bigint;
  /** Unmaps the behaviour refuses (strict: EINVAL/ENOENT). */
  refused: number;
}

export interface UnmapExample {
  position: number;
  class: SymmetryClass;
  foreign: boolean;
  iova: bigint;
  size: bigint;
  maps: Array<{ position: number; iova: bigint; size: bigint; caller: string; site?: string }>;
  /** For a miss: the earlier over-unmap that had removed the range. */
  missedAfter?: number;
  keptBytes: bigint;
  largestPage: bigint;
  legacy: { over: bigint; left: bigint };
  split: { over: bigint; left: bigint };
  strict: { left: bigint; errno?: string };
}

export interface CallerView {
  domain: string;
  caller: string;
  site: string;
  maps: number;
  unmaps: number;
  exact: number;
  spans: number;
  cuts: number;
  straddles: number;
  misses: number;
  /** Unmaps that reached a map made by another caller. */
  foreign: number;
  unmapBytes: bigint;
  /** Bytes of the maps its partial unmaps cut through that lay outside the request. */
  cutBytes: bigint;
  /** Share of unmaps that mirror whole maps (exact or spanning whole maps). */
  readiness: number;
  behaviours: Record<AnalysedBehaviour, BehaviourSummary>;
  /** The largest page size at which every cut edge of this site is harmless (0: no cuts). */
  safePage: bigint;
  /** The largest page that backed a map it cut. */
  largestPage: bigint;
  /** The most common sizes among its partial unmaps and the maps they cut (for advice). */
  typicalUnmap?: bigint;
  typicalMap?: bigint;
  /** Who made the maps its partial unmaps cut ("caller" or "caller at site"), most cut first. */
  cutMapsBy: string[];
  /** Misses that came right after another unmap over-unmapped the range (not double unmaps). */
  missesAfterOverUnmap: number;
  /**
   * Its over-unmaps in this ledger, by verdict (core/stepping.ts): stepped (it consumed the
   * returned size), harmful (somebody still relied on the collateral), pending (not decided yet).
   */
  overUnmaps: { stepped: number; harmful: number; pending: number };
  /** The worst unmaps (most over-unmapped, then most kept bytes), with positions for `explain`. */
  examples: UnmapExample[];
  /** What its unmaps do, in order (`cli/render/callers.ts` words each one). */
  notes: CallerNote[];
  /** What to change in the source, when the analysis can say. */
  fix?: CallerFix;
}

/**
 * The outcome of a site's partial unmaps (cuts and straddles) on this hardware: over-unmaps in
 * the legacy loop (pages up to `largestPage`; `safePage`, when not 0, the largest page on which the
 * cuts would be harmless), harmless on these pages but not on pages larger than `safePage`, or
 * harmless.
 */
export type PartialRisk =
  | { kind: 'over-unmapped'; bytes: bigint; unmaps: number; largestPage: bigint; safePage: bigint }
  | { kind: 'page-dependent'; largestPage: bigint; safePage: bigint }
  | { kind: 'harmless' };

/** One finding of the caller analysis about a site, in the order they are listed. */
export type CallerNote =
  | { kind: 'no-unmaps' }
  /** Every unmap removes whole maps, and none reaches another caller's. */
  | { kind: 'symmetric' }
  | { kind: 'partial'; cuts: number; straddles: number; risk: PartialRisk }
  /** Over-unmaps that stepped by the returned size (`stepped`), and the others (harmful or not decided). */
  | { kind: 'steps'; stepped: number; others: number }
  /** Partial unmaps that strict unmap (VFIO type1 v2, iommufd) refuses. */
  | { kind: 'strict-refuses'; refused: number }
  /** Unmaps the legacy loop stops short of (a hole), and the bytes left mapped. */
  | { kind: 'leaves-mapped'; unmaps: number; bytes: bigint }
  /** Unmaps that hit nothing, `afterOverUnmap` of them right after another unmap over-unmapped the range. */
  | { kind: 'misses'; misses: number; afterOverUnmap: number }
  /** Unmaps that removed another caller's mapping. */
  | { kind: 'foreign'; unmaps: number };

/**
 * What to change at a site. `unmapSize` and `mapSize` are the most common sizes of its partial
 * unmaps and of the maps they cut; `mappers`, who made those maps (its `cutMapsBy`).
 */
export type CallerFix =
  /** It steps by the returned size: correct under the 2011 semantics; symmetric by unmapping each map as mapped. */
  | { kind: 'stepper' }
  /** It cuts other callers' maps (`others`): they should map in its pieces, or it unmap whole maps of its own. */
  | { kind: 'others-map-pieces'; unmapSize: bigint; mapSize: bigint; mappers: string[]; others: string[] }
  /** Its unmaps are as large as the maps, or larger, but cross them: unmap each map as mapped. */
  | { kind: 'unmap-as-mapped'; unmapSize: bigint; mapSize: bigint }
  /** It maps large and unmaps in pieces, all its own maps. */
  | { kind: 'own-pieces'; unmapSize: bigint; mapSize: bigint }
  /** It unmaps pieces of maps made at other sites. */
  | { kind: 'pieces'; unmapSize: bigint; mapSize: bigint; mappers: string[] }
  /** It unmaps ranges another caller mapped. */
  | { kind: 'foreign' }
  /** Its misses are not explained by over-unmaps: double unmaps, or a trace that starts mid-stream. */
  | { kind: 'double-unmaps' };

const B = 9223372036854775808n;

/*
 * The rows the analysis reads, with safe integers (the `Queries` connection's default): every
 * integer is a bigint, and 64-bit values are biased (codec.ts).
 */

/** A `caller_symmetry` row, with its domain's name. */
type SiteRow = Tables['caller_symmetry'] & { name: string };

/** A site: its domain, caller and call site (the key of `caller_symmetry` and of a site's `asymmetric_unmaps`). */
type SiteKey = [domain: bigint, caller: string, site: string];

/** A site's asymmetric unmaps summed per behaviour: counts, unbiased byte sums, biased pages (NULL when none). */
interface TotalsRow {
  lo: bigint | null;
  lob: bigint | null;
  ll: bigint | null;
  llb: bigint | null;
  so: bigint | null;
  sob: bigint | null;
  sl: bigint | null;
  slb: bigint | null;
  sr: bigint | null;
  tl: bigint | null;
  tlb: bigint | null;
  safe: bigint | null;
  largest: bigint | null;
}

/** An `asymmetric_unmaps` row (`maps` is JSON text). */
interface AsymmetricRow {
  position: bigint;
  class: SymmetryClass;
  foreign_map: bigint;
  iova: bigint;
  size: bigint;
  maps: string;
  kept_bytes: bigint;
  largest_page: bigint;
  legacy_over: bigint;
  legacy_left: bigint;
  split_over: bigint;
  split_left: bigint;
  strict_left: bigint;
  strict_errno: string | null;
  missed_after: bigint | null;
}

/** A biased column summed without overflow: SUM(x + 2^63) as an unbiased integer. */
const sumOf = (col: string, when: string) => `SUM(CASE WHEN ${when} THEN ${col} + 9223372036854775807 + 1 ELSE 0 END)`;

export function callerAnalysis(db: Database.Database, filter: { domain?: number; caller?: string; examples?: number } = {}): CallerView[] {
  const where: string[] = [];
  const args: Array<number | string> = [];
  if (filter.domain !== undefined) {
    where.push('c.domain = ?');
    args.push(filter.domain);
  }
  if (filter.caller !== undefined) {
    where.push('c.caller = ?');
    args.push(filter.caller);
  }
  const rows = db
    .prepare<Array<number | string>, SiteRow>(
      `SELECT s.name AS name, c.* FROM caller_symmetry c JOIN streams s ON s.id = c.domain
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY s.id, c.caller, c.site`,
    )
    .safeIntegers(true)
    .all(...args);
  const zero = -B;
  const agg = db
    .prepare<SiteKey, TotalsRow>(
      `SELECT
         SUM(legacy_over > ${zero}) AS lo, ${sumOf('legacy_over', `legacy_over > ${zero}`)} AS lob,
         SUM(legacy_left > ${zero}) AS ll, ${sumOf('legacy_left', `legacy_left > ${zero}`)} AS llb,
         SUM(split_over > ${zero}) AS so, ${sumOf('split_over', `split_over > ${zero}`)} AS sob,
         SUM(split_left > ${zero}) AS sl, ${sumOf('split_left', `split_left > ${zero}`)} AS slb,
         SUM(strict_errno IS NOT NULL) AS sr, SUM(strict_left > ${zero} AND strict_errno IS NULL) AS tl,
         ${sumOf('strict_left', `strict_left > ${zero} AND strict_errno IS NULL`)} AS tlb,
         MIN(CASE WHEN safe_page > ${zero} THEN safe_page END) AS safe,
         MAX(CASE WHEN class IN ('cuts','straddles') THEN largest_page END) AS largest
       FROM asymmetric_unmaps WHERE domain = ? AND caller = ? AND site = ?`,
    )
    .safeIntegers(true);
  const examples = db
    .prepare<[...SiteKey, limit: number], AsymmetricRow>(
      `SELECT * FROM asymmetric_unmaps WHERE domain = ? AND caller = ? AND site = ?
       ORDER BY legacy_over DESC, kept_bytes DESC, position LIMIT ?`,
    )
    .safeIntegers(true);
  const typicalUnmap = db
    .prepare<SiteKey, { size: bigint }>(
      `SELECT size FROM asymmetric_unmaps WHERE domain = ? AND caller = ? AND site = ? AND class IN ('cuts','straddles')
       GROUP BY size ORDER BY count(*) DESC, size LIMIT 1`,
    )
    .safeIntegers(true);
  const typicalMap = db
    .prepare<SiteKey, { size: string }>(
      `SELECT json_extract(m.value, '$.size') AS size FROM asymmetric_unmaps a, json_each(a.maps) m
       WHERE a.domain = ? AND a.caller = ? AND a.site = ? AND a.class IN ('cuts','straddles')
       GROUP BY 1 ORDER BY count(*) DESC LIMIT 1`,
    )
    .safeIntegers(true);
  const cutOwners = db.prepare<SiteKey, { caller: string; site: string | null; n: bigint }>(
    `SELECT json_extract(m.value, '$.caller') AS caller, json_extract(m.value, '$.site') AS site, count(*) AS n
     FROM asymmetric_unmaps a, json_each(a.maps) m
     WHERE a.domain = ? AND a.caller = ? AND a.site = ? AND a.class IN ('cuts','straddles')
     GROUP BY 1, 2 ORDER BY n DESC`,
  );
  const missesAfter = db.prepare<SiteKey, { n: bigint }>(
    `SELECT count(*) AS n FROM asymmetric_unmaps WHERE domain = ? AND caller = ? AND site = ? AND class = 'misses' AND missed_after IS NOT NULL`,
  );
  const verdicts = db.prepare<SiteKey, { step: string; n: bigint }>(
    `SELECT coalesce(step, 'harmful') AS step, count(*) AS n FROM unmap_findings WHERE domain = ? AND caller = ? AND site = ? AND collateral_bytes > ${zero} GROUP BY 1`,
  );
  const n = (v: bigint | null) => Number(v ?? 0);
  const big = (v: bigint | null) => v ?? 0n;
  return rows.map((r) => {
    const key: SiteKey = [r.domain, r.caller, r.site];
    // An aggregate without GROUP BY returns one row, always.
    const a = agg.get(...key)!;
    const unmaps = n(r.unmaps);
    const exact = n(r.exact);
    const spans = n(r.spans);
    const v: CallerView = {
      domain: r.name,
      caller: r.caller,
      site: r.site,
      maps: n(r.maps),
      unmaps,
      exact,
      spans,
      cuts: n(r.cuts),
      straddles: n(r.straddles),
      misses: n(r.misses),
      foreign: n(r.foreign_unmaps),
      unmapBytes: fromDb(r.unmap_bytes),
      cutBytes: fromDb(r.cut_bytes),
      readiness: unmaps ? (exact + spans) / unmaps : 1,
      behaviours: {
        legacy: { overUnmaps: n(a.lo), overBytes: big(a.lob), leftMapped: n(a.ll), leftBytes: big(a.llb), refused: 0 },
        split: { overUnmaps: n(a.so), overBytes: big(a.sob), leftMapped: n(a.sl), leftBytes: big(a.slb), refused: 0 },
        strict: { overUnmaps: 0, overBytes: 0n, leftMapped: n(a.tl), leftBytes: big(a.tlb), refused: n(a.sr) },
      },
      safePage: a.safe === null ? 0n : fromDb(a.safe),
      largestPage: a.largest === null ? 0n : fromDb(a.largest),
      examples: examples.all(...key, filter.examples ?? 3).map(exampleOf),
      cutMapsBy: [],
      missesAfterOverUnmap: n(missesAfter.get(...key)!.n),
      overUnmaps: { stepped: 0, harmful: 0, pending: 0 },
      notes: [],
    };
    for (const x of verdicts.all(...key)) {
      if (x.step === 'stepped' || x.step === 'harmful' || x.step === 'pending') v.overUnmaps[x.step] = n(x.n);
    }
    const tu = typicalUnmap.get(...key);
    const tm = typicalMap.get(...key);
    if (tu) v.typicalUnmap = fromDb(tu.size);
    if (tm) v.typicalMap = BigInt(tm.size);
    const owners = cutOwners.all(...key);
    v.cutMapsBy = owners.map((o) => (o.site ? `${o.caller} at ${o.site}` : o.caller));
    describe(
      v,
      owners.map((o) => o.caller),
    );
    return v;
  });
}

function exampleOf(r: AsymmetricRow): UnmapExample {
  const maps = JSON.parse(r.maps) as Array<{ position: number; iova: string; size: string; caller: string; site?: string }>;
  const e: UnmapExample = {
    position: Number(r.position),
    class: r.class,
    foreign: Number(r.foreign_map) === 1,
    iova: fromDb(r.iova),
    size: fromDb(r.size),
    maps: maps.map((m) => ({ position: m.position, iova: BigInt(m.iova), size: BigInt(m.size), caller: m.caller, ...(m.site ? { site: m.site } : {}) })),
    keptBytes: fromDb(r.kept_bytes),
    largestPage: fromDb(r.largest_page),
    legacy: { over: fromDb(r.legacy_over), left: fromDb(r.legacy_left) },
    split: { over: fromDb(r.split_over), left: fromDb(r.split_left) },
    strict: { left: fromDb(r.strict_left) },
  };
  if (r.strict_errno) e.strict.errno = r.strict_errno;
  if (r.missed_after !== null && r.missed_after !== undefined) e.missedAfter = Number(r.missed_after);
  return e;
}

/** What a caller's unmaps do, under which behaviour they go wrong, and what to change (as data). */
function describe(v: CallerView, ownerCallers: string[]): void {
  const out = v.notes;
  if (v.unmaps === 0) {
    out.push({ kind: 'no-unmaps' });
    return;
  }
  if (v.exact + v.spans === v.unmaps && v.foreign === 0) out.push({ kind: 'symmetric' });
  const partial = v.cuts + v.straddles;
  if (partial) {
    const lg = v.behaviours.legacy;
    const risk: PartialRisk =
      lg.overBytes > 0n
        ? { kind: 'over-unmapped', bytes: lg.overBytes, unmaps: lg.overUnmaps, largestPage: v.largestPage, safePage: v.safePage }
        : v.safePage
          ? { kind: 'page-dependent', largestPage: v.largestPage, safePage: v.safePage }
          : { kind: 'harmless' };
    out.push({ kind: 'partial', cuts: v.cuts, straddles: v.straddles, risk });
    const ou = v.overUnmaps;
    if (ou.stepped) out.push({ kind: 'steps', stepped: ou.stepped, others: ou.harmful + ou.pending });
    const st = v.behaviours.strict;
    if (st.refused) out.push({ kind: 'strict-refuses', refused: st.refused });
  }
  if (v.behaviours.legacy.leftMapped) out.push({ kind: 'leaves-mapped', unmaps: v.behaviours.legacy.leftMapped, bytes: v.behaviours.legacy.leftBytes });
  if (v.misses) out.push({ kind: 'misses', misses: v.misses, afterOverUnmap: v.missesAfterOverUnmap });
  if (v.foreign) out.push({ kind: 'foreign', unmaps: v.foreign });
  const stepper = v.overUnmaps.stepped > 0 && v.overUnmaps.harmful + v.overUnmaps.pending === 0 && v.foreign === 0;
  if (stepper) {
    // Nothing to fix under the legacy loop; what breaks is a move to strict unmap (VFIO type1 v2,
    // iommufd) or to kernels where a partial unmap of a large page removes nothing.
    v.fix = { kind: 'stepper' };
  } else if (partial && v.typicalMap !== undefined && v.typicalUnmap !== undefined) {
    const sizes = { unmapSize: v.typicalUnmap, mapSize: v.typicalMap };
    const where = v.site ? `${v.caller} at ${v.site}` : v.caller;
    const others = [...new Set(ownerCallers)].filter((c) => c !== v.caller);
    if (others.length) v.fix = { kind: 'others-map-pieces', ...sizes, mappers: v.cutMapsBy, others };
    else if (v.typicalUnmap >= v.typicalMap) v.fix = { kind: 'unmap-as-mapped', ...sizes };
    // (every cut map was made here: the same caller, and the same site or none)
    else if (v.maps > 0 && v.cutMapsBy.every((o) => o === where || o === v.caller)) v.fix = { kind: 'own-pieces', ...sizes };
    else v.fix = { kind: 'pieces', ...sizes, mappers: v.cutMapsBy };
  } else if (v.foreign) {
    v.fix = { kind: 'foreign' };
  } else if (v.misses > v.missesAfterOverUnmap && v.exact + v.spans + v.misses === v.unmaps) {
    v.fix = { kind: 'double-unmaps' };
  }
}
