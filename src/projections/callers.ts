/**
 * The caller analysis (`callers`): per caller and call site, how its unmaps relate to the maps
 * alive at that moment, what they do under each unmap behaviour, the worst examples and what
 * to change. Read from the caller_symmetry and asymmetric_unmaps projections (no replay).
 */
import type Database from 'better-sqlite3';
import { formatSize, hex } from '../core/address.js';
import type { Semantics } from '../core/profile.js';
import type { SymmetryClass } from '../core/symmetry.js';
import { fromDb } from './codec.js';

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
  behaviours: Record<Semantics, BehaviourSummary>;
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
  /** Plain sentences: what its unmaps do, and what to change in the source. */
  verdict: string[];
  advice?: string;
}

const B = 9223372036854775808n;

/** A biased column summed without overflow: SUM(x + 2^63) as an unbiased integer. */
const sumOf = (col: string, when: string) => `SUM(CASE WHEN ${when} THEN ${col} + 9223372036854775807 + 1 ELSE 0 END)`;

export function callerAnalysis(db: Database.Database, filter: { domain?: number; caller?: string; examples?: number } = {}): CallerView[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (filter.domain !== undefined) {
    where.push('c.domain = ?');
    args.push(filter.domain);
  }
  if (filter.caller !== undefined) {
    where.push('c.caller = ?');
    args.push(filter.caller);
  }
  const rows = db
    .prepare(
      `SELECT s.name AS name, c.* FROM caller_symmetry c JOIN streams s ON s.id = c.domain
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY s.id, c.caller, c.site`,
    )
    .safeIntegers(true)
    .all(...args) as Array<Record<string, bigint | string>>;
  const zero = -B;
  const agg = db
    .prepare(
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
    .prepare(
      `SELECT * FROM asymmetric_unmaps WHERE domain = ? AND caller = ? AND site = ?
       ORDER BY legacy_over DESC, kept_bytes DESC, position LIMIT ?`,
    )
    .safeIntegers(true);
  const typicalUnmap = db
    .prepare(
      `SELECT size FROM asymmetric_unmaps WHERE domain = ? AND caller = ? AND site = ? AND class IN ('cuts','straddles')
       GROUP BY size ORDER BY count(*) DESC, size LIMIT 1`,
    )
    .safeIntegers(true);
  const typicalMap = db
    .prepare(
      `SELECT json_extract(m.value, '$.size') AS size FROM asymmetric_unmaps a, json_each(a.maps) m
       WHERE a.domain = ? AND a.caller = ? AND a.site = ? AND a.class IN ('cuts','straddles')
       GROUP BY 1 ORDER BY count(*) DESC LIMIT 1`,
    )
    .safeIntegers(true);
  const cutOwners = db.prepare(
    `SELECT json_extract(m.value, '$.caller') AS caller, json_extract(m.value, '$.site') AS site, count(*) AS n
     FROM asymmetric_unmaps a, json_each(a.maps) m
     WHERE a.domain = ? AND a.caller = ? AND a.site = ? AND a.class IN ('cuts','straddles')
     GROUP BY 1, 2 ORDER BY n DESC`,
  );
  const missesAfter = db.prepare(
    `SELECT count(*) AS n FROM asymmetric_unmaps WHERE domain = ? AND caller = ? AND site = ? AND class = 'misses' AND missed_after IS NOT NULL`,
  );
  const verdicts = db.prepare(
    `SELECT coalesce(step, 'harmful') AS step, count(*) AS n FROM unmap_findings WHERE domain = ? AND caller = ? AND site = ? AND collateral_bytes > ${zero} GROUP BY 1`,
  );
  const n = (v: unknown) => Number(v ?? 0);
  const big = (v: unknown) => (v === null || v === undefined ? 0n : BigInt(v as bigint));
  return rows.map((r) => {
    const key = [r.domain, r.caller, r.site] as const;
    const a = agg.get(...key) as Record<string, bigint | null>;
    const unmaps = n(r.unmaps);
    const exact = n(r.exact);
    const spans = n(r.spans);
    const v: CallerView = {
      domain: r.name as string,
      caller: r.caller as string,
      site: r.site as string,
      maps: n(r.maps),
      unmaps,
      exact,
      spans,
      cuts: n(r.cuts),
      straddles: n(r.straddles),
      misses: n(r.misses),
      foreign: n(r.foreign_unmaps),
      unmapBytes: fromDb(r.unmap_bytes as bigint),
      cutBytes: fromDb(r.cut_bytes as bigint),
      readiness: unmaps ? (exact + spans) / unmaps : 1,
      behaviours: {
        legacy: { overUnmaps: n(a.lo), overBytes: big(a.lob), leftMapped: n(a.ll), leftBytes: big(a.llb), refused: 0 },
        split: { overUnmaps: n(a.so), overBytes: big(a.sob), leftMapped: n(a.sl), leftBytes: big(a.slb), refused: 0 },
        strict: { overUnmaps: 0, overBytes: 0n, leftMapped: n(a.tl), leftBytes: big(a.tlb), refused: n(a.sr) },
      },
      safePage: a.safe === null || a.safe === undefined ? 0n : fromDb(a.safe),
      largestPage: a.largest === null || a.largest === undefined ? 0n : fromDb(a.largest),
      examples: (examples.all(...key, filter.examples ?? 3) as Array<Record<string, bigint | string | null>>).map(exampleOf),
      cutMapsBy: [],
      missesAfterOverUnmap: n((missesAfter.get(...key) as { n: number }).n),
      overUnmaps: { stepped: 0, harmful: 0, pending: 0 },
      verdict: [],
    };
    for (const x of verdicts.all(...key) as Array<{ step: string; n: bigint }>) {
      if (x.step === 'stepped' || x.step === 'harmful' || x.step === 'pending') v.overUnmaps[x.step] = n(x.n);
    }
    const tu = typicalUnmap.get(...key) as { size: bigint } | undefined;
    const tm = typicalMap.get(...key) as { size: string } | undefined;
    if (tu) v.typicalUnmap = fromDb(tu.size);
    if (tm) v.typicalMap = BigInt(tm.size);
    const owners = cutOwners.all(...key) as Array<{ caller: string; site: string | null }>;
    v.cutMapsBy = owners.map((o) => (o.site ? `${o.caller} at ${o.site}` : o.caller));
    describe(
      v,
      owners.map((o) => o.caller),
    );
    return v;
  });
}

function exampleOf(r: Record<string, bigint | string | null>): UnmapExample {
  const maps = JSON.parse(r.maps as string) as Array<{ position: number; iova: string; size: string; caller: string; site?: string }>;
  const e: UnmapExample = {
    position: Number(r.position),
    class: r.class as SymmetryClass,
    foreign: Number(r.foreign_map) === 1,
    iova: fromDb(r.iova as bigint),
    size: fromDb(r.size as bigint),
    maps: maps.map((m) => ({ position: m.position, iova: BigInt(m.iova), size: BigInt(m.size), caller: m.caller, ...(m.site ? { site: m.site } : {}) })),
    keptBytes: fromDb(r.kept_bytes as bigint),
    largestPage: fromDb(r.largest_page as bigint),
    legacy: { over: fromDb(r.legacy_over as bigint), left: fromDb(r.legacy_left as bigint) },
    split: { over: fromDb(r.split_over as bigint), left: fromDb(r.split_left as bigint) },
    strict: { left: fromDb(r.strict_left as bigint) },
  };
  if (r.strict_errno) e.strict.errno = r.strict_errno as string;
  if (r.missed_after !== null && r.missed_after !== undefined) e.missedAfter = Number(r.missed_after);
  return e;
}

const times = (k: number) => (k === 1 ? 'once' : `${k} times`);

/** Sentences for a caller: what its unmaps do, under which behaviour they go wrong, what to change. */
function describe(v: CallerView, ownerCallers: string[]): void {
  const out = v.verdict;
  const where = v.site ? `${v.caller} at ${v.site}` : v.caller;
  if (v.unmaps === 0) {
    out.push('no unmaps');
    return;
  }
  if (v.exact + v.spans === v.unmaps && v.foreign === 0) out.push('symmetric: every unmap removes whole maps');
  const partial = v.cuts + v.straddles;
  if (partial) {
    const what = [v.cuts ? `cuts a map ${times(v.cuts)}` : '', v.straddles ? `crosses a map's edge ${times(v.straddles)}` : ''].filter(Boolean).join(' and ');
    const lg = v.behaviours.legacy;
    let risk: string;
    if (lg.overBytes > 0n) {
      risk = `over-unmapped ${formatSize(lg.overBytes)} in ${lg.overUnmaps} unmap${lg.overUnmaps === 1 ? '' : 's'} on this hardware (pages up to ${formatSize(v.largestPage)}`;
      risk += v.safePage ? `; the cuts are harmless only on pages up to ${formatSize(v.safePage)})` : ')';
    } else if (v.safePage) {
      risk = `harmless on ${formatSize(v.largestPage)} pages, over-unmaps if that map used a page larger than ${formatSize(v.safePage)}`;
    } else {
      risk = 'harmless on these pages';
    }
    out.push(`${what}; ${risk}`);
    const ou = v.overUnmaps;
    if (ou.stepped) {
      out.push(
        ou.harmful + ou.pending === 0
          ? `steps by the returned size: each of its ${ou.stepped} over-unmap${ou.stepped === 1 ? '' : 's'} removed a whole page of its own map and its next unmap started where that page ended (or the map did): nothing it still wanted was lost (VFIO's vfio_unmap_unpin() works this way)`
          : `steps by the returned size in ${ou.stepped} of its over-unmaps; ${ou.harmful + ou.pending} took pages somebody still relied on (audit over-unmaps --caller ${v.caller} lists them)`,
      );
    }
    const st = v.behaviours.strict;
    if (st.refused) out.push(`strict unmap (VFIO type1 v2, iommufd) refuses ${st.refused} of them`);
  }
  if (v.behaviours.legacy.leftMapped) {
    out.push(
      `leaves pages mapped ${times(v.behaviours.legacy.leftMapped)} under the legacy loop (${formatSize(v.behaviours.legacy.leftBytes)}: it stops at a hole)`,
    );
  }
  if (v.misses) {
    const after = v.missesAfterOverUnmap;
    const why =
      after === v.misses
        ? "each right after another unmap had over-unmapped the range: not this caller's bug"
        : after
          ? `${after} of them right after another unmap had over-unmapped the range; the others: a double unmap, or a trace that starts mid-stream`
          : 'a double unmap, or a trace that starts mid-stream';
    out.push(`unmaps nothing ${times(v.misses)} (${why})`);
  }
  if (v.foreign) out.push(`removes another caller's mapping ${times(v.foreign)}`);
  const stepper = v.overUnmaps.stepped > 0 && v.overUnmaps.harmful + v.overUnmaps.pending === 0 && v.foreign === 0;
  if (stepper) {
    // Nothing to fix under the legacy loop; what breaks is a move to strict unmap (VFIO type1 v2,
    // iommufd) or to kernels where a partial unmap of a large page removes nothing.
    v.advice = `${where} steps by the returned size (correct under the 2011 semantics): to make it symmetric, unmap each map as it was mapped — migrate --strategy unmap-as-mapped --caller ${v.caller}`;
  } else if (partial && v.typicalMap !== undefined && v.typicalUnmap !== undefined) {
    const m = formatSize(v.typicalMap);
    const u = formatSize(v.typicalUnmap);
    const others = [...new Set(ownerCallers)].filter((c) => c !== v.caller);
    const mapper = v.cutMapsBy.join(', ');
    if (others.length) {
      v.advice = `${where} unmaps ${u} pieces of ${m} maps made by ${mapper}: ${others.join(', ')} should map in ${u} pieces, or ${v.caller} unmap the whole ${m} (and only its own maps)`;
    } else if (v.typicalUnmap >= v.typicalMap) {
      v.advice = `${where} unmaps ${u} across maps of ${m}: unmap each map as it was mapped`;
    } else if (v.maps > 0 && v.cutMapsBy.every((o) => o === where || o === v.caller)) {
      // (every cut map was made here: the same caller, and the same site or none)
      v.advice = `${where} maps ${m} and unmaps ${u} pieces: map in ${u} pieces or unmap the whole ${m}`;
    } else {
      v.advice = `${where} unmaps ${u} pieces of ${m} maps made by ${mapper}: map in ${u} pieces there, or unmap the whole ${m} here`;
    }
  } else if (v.foreign) {
    v.advice = `${where} unmaps ranges another caller mapped: unmap only what it mapped itself`;
  } else if (v.misses > v.missesAfterOverUnmap && v.exact + v.spans + v.misses === v.unmaps) {
    v.advice = `${where}: check for double unmaps (or import the trace from its start)`;
  }
}

/** One line per example, for the human output (positions let `explain` follow). */
export function exampleText(e: UnmapExample): string {
  const maps = e.maps
    .map((m) => `#${m.position} ${hex(m.iova)}+${formatSize(m.size)}${m.caller ? ` by ${m.caller}${m.site ? ` at ${m.site}` : ''}` : ''}`)
    .join(', ');
  const what = `#${e.position} unmap ${hex(e.iova)}+${formatSize(e.size)} ${e.class}${e.foreign ? " (another caller's map)" : ''}${maps ? ` [${maps}]` : ''}`;
  if (e.class === 'misses') return `${what}: nothing was mapped there${e.missedAfter !== undefined ? ` (unmap #${e.missedAfter} had over-unmapped it)` : ''}`;
  const legacy = [e.legacy.over ? `over ${formatSize(e.legacy.over)}` : '', e.legacy.left ? `left ${formatSize(e.legacy.left)}` : '']
    .filter(Boolean)
    .join(' and ');
  const eff = [
    `legacy ${legacy || 'exact'}`,
    `split ${e.split.left ? `left ${formatSize(e.split.left)}` : 'exact'}`,
    `strict ${e.strict.errno ? `refused (${e.strict.errno})` : e.strict.left ? `left ${formatSize(e.strict.left)}` : 'exact'}`,
  ];
  return `${what}: ${eff.join(', ')}`;
}
