/**
 * The migration report: a verdict, the three checks, the cost before and after, and per call
 * site what to change in the source code. Markdown for people, JSON for scripts.
 */
import { formatSize, hex } from '../core/address.js';
import type { CallerView } from '../projections/callers.js';

/** A site of the caller analysis with its sentences (the CLI's renderer words them: cli/render/callers.ts). */
export type SiteCaller = CallerView & { verdict: string[]; advice?: string };
import {
  FAILING,
  REGRESSION_ORDER,
  type Cost,
  type MigrationResult,
  type Problem,
  type ProblemKind,
  type RegressionKind,
  type UnmapAsMappedStats,
} from './engine.js';

export interface SiteReport {
  domain: string;
  caller: string;
  site: string;
  strategies: Record<string, number>;
  before?: SiteCaller;
  after?: SiteCaller;
  /** What to change in the source, in a sentence. */
  change: string;
  problems: Problem[];
}

export interface Report {
  result: MigrationResult;
  sites: SiteReport[];
  /** Set when the source was upgraded from an older schema and not rebuilt. */
  staleSource?: string;
}

/** The words for each kind, in the report and the summary. */
export const KIND_TEXT: Record<ProblemKind, string> = {
  'map-refused': 'map refused',
  'unmap-refused': 'unmap refused',
  'unmap-empty': 'unmap removes nothing',
  'unmap-early': 'unmap removes pages too early',
  'end-mapped': 'left mapped at the end',
  'end-unmapped': 'missing at the end',
  'end-moved': 'mapped elsewhere at the end',
  'fault-unmapped': 'fault on a page only the source maps',
  'fault-mapped': 'fault on a page only the new ledger maps',
  'intent-added': 'intent only in the new ledger',
  'intent-lost': 'intent only in the source',
  'over-unmap': 'over-unmaps',
  'left-mapped': 'leaves pages mapped',
  flagged: 'flagged (kept as is, not symmetric)',
  fixed: 'bug fixed',
  withdrawn: 'not a fix (withdrawn)',
  'fix-effect': 'follows a fix',
  'not-migrated': 'not migrated (kept as is)',
  'refused-in-source': 'refused in the source too',
};

export function buildReport(result: MigrationResult, before: SiteCaller[], after: SiteCaller[], staleSource?: string): Report {
  const key = (d: string, c: string, s: string) => `${d}\0${c}\0${s}`;
  const b = new Map(before.map((v) => [key(v.domain, v.caller, v.site), v]));
  const a = new Map(after.map((v) => [key(v.domain, v.caller, v.site), v]));
  const sites: SiteReport[] = result.siteStrategies.map((s) => {
    const k = key(s.domain, s.caller, s.site);
    const bv = b.get(k);
    const av = a.get(k);
    const problems = result.problems.filter((p) => p.domain === s.domain && p.caller === s.caller && p.site === s.site);
    return { ...s, ...(bv ? { before: bv } : {}), ...(av ? { after: av } : {}), change: changeFor(s.strategies, bv), problems };
  });
  return { result, sites, ...(staleSource ? { staleSource } : {}) };
}

function main(strategies: Record<string, number>): string {
  return Object.entries(strategies).sort((x, y) => y[1] - x[1])[0]?.[0] ?? 'keep';
}

/** The sentence a developer acts on: what this site must do differently. */
function changeFor(strategies: Record<string, number>, v: SiteCaller | undefined): string {
  if (!v || v.unmaps === 0) return 'nothing: it only maps (its maps are split or kept as the unmapping sites need)';
  if (!v.advice && !v.foreign && v.cuts + v.straddles === 0 && v.misses === v.missesAfterOverUnmap && !v.behaviours.legacy.leftMapped) {
    return "nothing: its unmaps that hit nothing follow another unmap's over-unmap (change that site)";
  }
  if (v.readiness === 1 && !v.foreign) return 'nothing: every unmap already removes whole maps';
  const s = main(strategies);
  const advice = v.advice ?? v.verdict.join('; ');
  if (s === 'split-maps') return `${advice} (the migration maps in the pieces its unmaps use)`;
  if (s === 'widen-unmaps') return `${advice} (the migration unmaps whole maps and maps back what must stay)`;
  if (s === 'unmap-as-mapped')
    return `${advice} (the migration unmaps each map whole where the source's unmap first removed pages of it, and drops the steps after it)`;
  return advice;
}

/** Ranges as 0x200000+4K; a fault's address (one byte) as itself. */
const fmtRanges = (p: Problem) => p.ranges.map((r) => (r.size === 1n ? hex(r.iova) : `${hex(r.iova)}+${formatSize(r.size)}`)).join(', ');

function costRows(name: string, c: { before: Cost; after: Cost }): string[] {
  const row = (label: string, x: string | number, y: string | number) => `| ${name} | ${label} | ${x} | ${y} |`;
  const lv = (xs: number[], levels: string[]) => xs.map((n, i) => `${levels[i]}:${n}`).join(' ');
  return [
    row('map calls', c.before.maps, c.after.maps),
    row('unmap calls', c.before.unmaps, c.after.unmaps),
    row('entries written per level', lv(c.before.entriesWritten, c.before.levels), lv(c.after.entriesWritten, c.after.levels)),
    row('entries at the end per level', lv(c.before.finalEntries, c.before.levels), lv(c.after.finalEntries, c.after.levels)),
    row('page tables allocated', c.before.tablesAllocated, c.after.tablesAllocated),
    row('peak page-table memory', memText(c.before.peakTableBytes), memText(c.after.peakTableBytes)),
    row(
      'IOTLB invalidations',
      `${c.before.invalidations} (${formatSize(c.before.invalidatedBytes)})`,
      `${c.after.invalidations} (${formatSize(c.after.invalidatedBytes)})`,
    ),
  ];
}

/** "#5 (new #6)": a problem's source event and the new events made from it. */
export function refText(p: Problem): string {
  if (p.migratedPosition === undefined) return `#${p.position}`;
  return p.migratedLast !== undefined ? `#${p.position} (new #${p.migratedPosition}-#${p.migratedLast})` : `#${p.position} (new #${p.migratedPosition})`;
}

/** The verdict of each check, then the fixes, the cost and the notes: the summary's lines and the report's. */
export function checkLines(r: MigrationResult): string[] {
  const n = (...ks: ProblemKind[]) => ks.reduce((a, k) => a + (r.counts[k] ?? 0), 0);
  const b = (k: ProblemKind) => formatSize(r.bytes[k] ?? 0n);
  const mark = (...ks: ProblemKind[]) => (n(...ks) === 0 ? 'ok  ' : 'FAIL');
  const kept = (...ks: RegressionKind[]) => {
    const x = ks.reduce((a, k) => a + (r.notMigrated[k] ?? 0), 0);
    return x ? `; ${x} more in commands kept as they are (not migrated)` : '';
  };
  const ranges = (...ks: ProblemKind[]) => {
    const x = n(...ks);
    return x ? ` (${x} range${x === 1 ? '' : 's'})` : '';
  };
  const f = r.fixed;
  const fixed = f['over-unmap'] + f['left-mapped'] + f.refused;
  return [
    `${mark('map-refused')} 1. maps: ${n('map-refused')} refused that the source stored as ok${kept('map-refused')}`,
    `${mark('unmap-empty', 'unmap-refused', 'unmap-early')} 2. unmaps: ${n('unmap-empty')} removing nothing where the source removed something, ${n('unmap-refused')} refused that the source carried out, ${n('unmap-early')} removing pages the source still maps${kept('unmap-empty', 'unmap-refused', 'unmap-early')}`,
    `${mark('end-mapped', 'end-unmapped', 'end-moved')} 3. end state: ${b('end-mapped')} left mapped where the source maps nothing, ${b('end-unmapped')} missing where the source maps pages, ${b('end-moved')} mapped elsewhere${ranges('end-mapped', 'end-unmapped', 'end-moved')}${kept('end-mapped', 'end-unmapped', 'end-moved')}`,
    `${mark('fault-unmapped', 'fault-mapped')} 4. faults: ${n('fault-unmapped')} on a page unmapped where the source had it mapped, ${n('fault-mapped')} on a page mapped where the source had it unmapped${kept('fault-unmapped', 'fault-mapped')}`,
    `${mark('intent-added', 'intent-lost')} 5. intent at the end: ${b('intent-added')} believed mapped only in the new ledger, ${b('intent-lost')} only in the source${ranges('intent-added', 'intent-lost')}${kept('intent-added', 'intent-lost')}`,
    `${mark('flagged', 'over-unmap', 'left-mapped')} 6. symmetric: ${n('flagged')} flagged, ${n('over-unmap')} over-unmap, ${n('left-mapped')} leave pages mapped under strict unmap${kept('over-unmap', 'left-mapped')}`,
    `     bugs fixed: ${fixed} (over-unmaps ${f['over-unmap']}, unmaps that left pages mapped ${f['left-mapped']}, refused unmaps ${f.refused})${n('withdrawn') ? `; ${n('withdrawn')} more not counted: a later regression touches their pages` : ''}`,
    `     cost: ${Object.entries(r.cost)
      .map(
        ([d, c]) =>
          `${d}: ${c.before.maps}+${c.before.unmaps} -> ${c.after.maps}+${c.after.unmaps} map+unmap calls, peak tables ${memText(c.before.peakTableBytes)} -> ${memText(c.after.peakTableBytes)}, ${c.before.invalidations} -> ${c.after.invalidations} invalidations`,
      )
      .join('; ')}`,
    ...(r.unmapAsMapped ? [`     ${uamText(r.unmapAsMapped)}`] : []),
    ...(r.caughtUp.unmaps
      ? [
          `     removed before the source did: ${r.caughtUp.unmaps} unmap${r.caughtUp.unmaps === 1 ? '' : 's'} (${formatSize(r.caughtUp.bytes)}), each caught up by the same caller's following unmaps in the source (a teardown that steps)`,
        ]
      : []),
    ...(n('not-migrated') ? [`     not migrated (kept as they are, out of scope): ${n('not-migrated')} findings that do not fail the check`] : []),
    ...(n('refused-in-source') ? [`     refused in the source too: ${n('refused-in-source')}`] : []),
  ];
}

/** What unmap-as-mapped did with its unmaps, in a line. */
function uamText(u: UnmapAsMappedStats): string {
  const s = (x: number, one: string, many = `${one}s`) => `${x} ${x === 1 ? one : many}`;
  const extra = [
    u.holes ? `${s(u.holes, 'unmap')} of a hole the caller still believed mapped` : '',
    u.flagged ? `${u.flagged} kept and flagged (they reach another caller's map)` : '',
  ].filter(Boolean);
  return `unmap-as-mapped: ${s(u.unmaps, 'unmap')}: ${u.whole} made whole (${s(u.maps, 'whole map')} unmapped), ${u.droppedDone + u.droppedNothing} dropped (${u.droppedDone} whose pages were already unmapped in the new ledger, ${u.droppedNothing} that removed nothing in the source)${extra.length ? `; ${extra.join(', ')}` : ''}`;
}

/** Up to `per` regressions of each kind, one line each: kind, where, who, what. */
export function regressionLines(r: MigrationResult, per: number): string[] {
  const out: string[] = [];
  for (const k of REGRESSION_ORDER) {
    const list = r.problems.filter((p) => p.kind === k);
    for (const p of list.slice(0, per)) out.push(`${KIND_TEXT[k]} at ${refText(p)}, ${p.caller}: ${p.detail}`);
    const more = (r.counts[k] ?? 0) - Math.min(per, list.length);
    if (more > 0) out.push(`… ${more} more ${KIND_TEXT[k]} (in the report)`);
  }
  return out;
}

/** One line per caller with regressions: what regressed, counted. */
export function callerLines(r: MigrationResult): string[] {
  const out: string[] = [];
  for (const t of r.byCaller) {
    const parts: string[] = [];
    const g = t.regressions;
    const c = (k: RegressionKind, one: string, many: string) => {
      const x = g[k];
      if (x) parts.push(`${x} ${x === 1 ? one : many}`);
    };
    const by = (k: RegressionKind, text: string) => {
      if (g[k]) parts.push(`${formatSize(t.bytes[k] ?? 0n)} ${text}`);
    };
    c('map-refused', 'map refused', 'maps refused');
    c('unmap-empty', 'unmap removes nothing', 'unmaps remove nothing');
    c('unmap-refused', 'unmap refused', 'unmaps refused');
    c('unmap-early', 'unmap removes pages too early', 'unmaps remove pages too early');
    by('end-mapped', 'left mapped at the end');
    by('end-unmapped', 'missing at the end');
    by('end-moved', 'mapped elsewhere at the end');
    c('fault-unmapped', 'fault on a page only the source maps', 'faults on pages only the source maps');
    c('fault-mapped', 'fault on a page only the new ledger maps', 'faults on pages only the new ledger maps');
    by('intent-added', 'believed mapped only in the new ledger');
    by('intent-lost', 'believed mapped only in the source');
    c('flagged', 'flagged', 'flagged');
    c('over-unmap', 'over-unmap', 'over-unmaps');
    c('left-mapped', 'leaves pages mapped', 'leave pages mapped');
    if (!parts.length) continue;
    out.push(`${t.caller} (${t.domain}): ${parts.join(', ')}${t.fixed ? `; ${t.fixed} fixed` : ''}`);
  }
  return out;
}

export function markdown(rep: Report): string {
  const r = rep.result;
  const L: string[] = [];
  L.push(`# Migration report: ${r.migration}`, '');
  if (rep.staleSource)
    L.push(
      `> The source was upgraded (${rep.staleSource}) and not rebuilt: its caller analysis ("before") is incomplete. Run \`iommu-ledger rebuild\` on it first.`,
      '',
    );
  L.push(`- source: \`${r.source}\` (${r.sourceEvents} events, unchanged)`);
  L.push(`- migrated ledger: \`${r.out}\` (${r.migratedEvents} events; each linked to its source event by \`from.derivedFrom\`)`);
  if (r.scope !== undefined) L.push(`- scope: caller \`${r.scope}\` only; other callers' commands are kept as they are`);
  L.push(
    `- commands per strategy: ${
      Object.entries(r.strategies)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none'
    }`,
  );
  L.push('', `## Verdict: ${r.passed ? 'PASSED' : 'FAILED'}`, '');
  L.push('```', ...checkLines(r), '```', '');
  L.push(
    'The new ledger runs under strict unmap (VFIO type1 v2 / iommufd semantics). Each source map and unmap is compared with the commands it became (1, 2, 6), and the ends of both ledgers with each other from their stored projections: the pages of each domain (3), the faults (4), what each caller believes mapped (5). Every difference is a regression, named with the source event that shows it and the new events made from it, unless it follows from a fix or from a command kept as it is.',
  );
  const src = Object.entries(r.onSourceBehaviour);
  if (src.length) {
    L.push(
      'On the source hardware and its own unmap behaviour the migrated commands give: ' +
        src
          .map(
            ([d, s]) =>
              `${d} (${s.semantics}): ${s.overUnmaps} over-unmap (${formatSize(s.overBytes)}), ${s.leftMapped} leave mapped (${formatSize(s.leftBytes)})`,
          )
          .join('; ') +
        '.',
    );
  }
  const t = r.timings;
  L.push(
    '',
    `Time: ${secs(t.total)} in all; the checks of each command ${secs(t.checks)}, the comparison of the ends ${secs(t.ends)} (first pass ${secs(t.pass1)}, second pass with the appends ${secs(t.pass2)}).`,
  );
  if (r.byCaller.length) {
    L.push(
      '',
      '## Per caller',
      '',
      '| domain | caller | maps refused | unmaps removing nothing | unmaps refused | unmaps too early | end: left mapped / missing / elsewhere | faults | intent: new only / source only | flagged, over-unmap, left mapped | fixed | not migrated |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const c of r.byCaller) {
      const g = (k: RegressionKind) => c.regressions[k] ?? 0;
      const by = (k: RegressionKind) => formatSize(c.bytes[k] ?? 0n);
      L.push(
        `| ${c.domain} | ${c.caller} | ${g('map-refused')} | ${g('unmap-empty')} | ${g('unmap-refused')} | ${g('unmap-early')} | ${by('end-mapped')} / ${by('end-unmapped')} / ${by('end-moved')} | ${g('fault-unmapped') + g('fault-mapped')} | ${by('intent-added')} / ${by('intent-lost')} | ${g('flagged') + g('over-unmap') + g('left-mapped')} | ${c.fixed} | ${c.notMigrated} |`,
      );
    }
    const tot = (k: RegressionKind) => r.counts[k] ?? 0;
    const tb = (k: RegressionKind) => formatSize(r.bytes[k] ?? 0n);
    const f = r.fixed;
    L.push(
      `| **total** | | ${tot('map-refused')} | ${tot('unmap-empty')} | ${tot('unmap-refused')} | ${tot('unmap-early')} | ${tb('end-mapped')} / ${tb('end-unmapped')} / ${tb('end-moved')} | ${tot('fault-unmapped') + tot('fault-mapped')} | ${tb('intent-added')} / ${tb('intent-lost')} | ${tot('flagged') + tot('over-unmap') + tot('left-mapped')} | ${f['over-unmap'] + f['left-mapped'] + f.refused} | ${r.counts['not-migrated'] ?? 0} |`,
    );
  }
  const regs = regressionLines(r, 5);
  if (regs.length) L.push('', '## Regressions', '', ...regs.map((x) => `- ${x}`));
  const fixes = r.problems.filter((p) => p.kind === 'fixed' || p.kind === 'withdrawn');
  if (fixes.length) {
    L.push('', '## Bugs fixed', '');
    for (const p of fixes.slice(0, 20)) L.push(`- ${p.kind === 'fixed' ? 'fixed' : 'not a fix'} at ${refText(p)}, ${p.caller}: ${p.detail}`);
    if (fixes.length > 20) L.push(`- … ${fixes.length - 20} more in the JSON report`);
  }
  L.push('', '## Cost, before and after', '', '| domain | measure | before | after |', '|---|---|---|---|');
  for (const [d, c] of Object.entries(r.cost)) L.push(...costRows(d, c));
  L.push('', '## Call sites: what to change', '');
  for (const s of rep.sites) {
    L.push(`### ${s.caller}${s.site ? ` at \`${s.site}\`` : ''} (domain ${s.domain})`, '');
    L.push(
      `- strategy: ${Object.entries(s.strategies)
        .map(([k, v]) => `${k} (${v} commands)`)
        .join(', ')}`,
    );
    if (s.before) {
      const bv = s.before;
      L.push(
        `- before: ${bv.maps} maps, ${bv.unmaps} unmaps (${bv.exact} exact, ${bv.spans} whole maps, ${bv.cuts} cuts, ${bv.straddles} straddles, ${bv.misses} misses, ${bv.foreign} reach another caller's map); readiness ${pct(bv.readiness)}`,
      );
      if (bv.verdict.length) L.push(`- ${bv.verdict.join('; ')}`);
    }
    if (s.after) L.push(`- after: ${s.after.maps} maps, ${s.after.unmaps} unmaps; readiness ${pct(s.after.readiness)}`);
    L.push(`- **change in the source:** ${s.change}`);
    const fails = s.problems.filter((p) => FAILING.has(p.kind));
    for (const p of fails.slice(0, 5)) L.push(`- ${KIND_TEXT[p.kind]} at ${refText(p)}: ${p.detail} [${fmtRanges(p)}]`);
    if (fails.length > 5) L.push(`- … ${fails.length - 5} more listed in the JSON report`);
    L.push('');
  }
  const listed = r.problems.filter((p) => p.kind !== 'refused-in-source');
  if (listed.length) {
    L.push('## Findings by position', '', '| # | new # | kind | caller | ranges | detail |', '|---|---|---|---|---|---|');
    for (const p of listed.slice(0, 200)) {
      const kind = KIND_TEXT[p.kind];
      L.push(
        `| ${p.position} | ${p.migratedPosition ?? ''}${p.migratedLast !== undefined ? `-${p.migratedLast}` : ''} | ${kind} | ${p.caller} | ${fmtRanges(p)} | ${p.detail.replace(/\|/g, '\\|')} |`,
      );
    }
    if (listed.length > 200)
      L.push('', `… ${listed.length - 200} more in the JSON report (which keeps the first 1000 of each kind; the counts above are complete).`);
    L.push('');
  }
  L.push(`Follow any position with \`iommu-ledger --db ${r.source} explain IOVA --at POSITION\`.`, '');
  return L.join('\n');
}

const pct = (x: number) => `${Math.round(x * 100)}%`;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** Page-table memory: a size like 16K when it is whole KiB, else bytes (formatSize would print hex). */
function memText(n: number): string {
  return n % 1024 === 0 ? formatSize(BigInt(n)) : `${n} bytes`;
}

/** JSON with bigints as "0x" strings. */
export function reportJson(rep: Report): string {
  return JSON.stringify(rep, (_k, v: unknown) => (typeof v === 'bigint' ? hex(v) : v), 2);
}
