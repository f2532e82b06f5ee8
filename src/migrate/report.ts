/**
 * The migration report: a verdict, the three checks, the cost before and after, and per call
 * site what to change in the source code. Markdown for people, JSON for scripts.
 */
import { formatSize, hex } from '../core/address.js';
import type { CallerView } from '../projections/callers.js';
import { FAILING, type Cost, type MigrationResult, type Problem, type ProblemKind } from './engine.js';

export interface SiteReport {
  domain: string;
  caller: string;
  site: string;
  strategies: Record<string, number>;
  before?: CallerView;
  after?: CallerView;
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

const KIND_TEXT: Record<ProblemKind, string> = {
  rejected: 'refused under strict unmap',
  'over-unmap': 'over-unmaps',
  'left-mapped': 'leaves pages mapped',
  flagged: 'flagged (kept as is, not symmetric)',
  'intent-changed': 'intent differs from the source',
  lost: 'loses a page its caller relies on',
  'bug-fixed': 'bugs fixed (the source over-unmapped, left mapped or refused)',
  unfixed: 'lost in both histories',
  kept: "kept mapped where the source removed it at another caller's request",
  'not-migrated': 'not migrated (out of scope, not symmetric)',
  'rejected-in-source': 'refused in the source too',
};

export function buildReport(result: MigrationResult, before: CallerView[], after: CallerView[], staleSource?: string): Report {
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
function changeFor(strategies: Record<string, number>, v: CallerView | undefined): string {
  if (!v || v.unmaps === 0) return 'nothing: it only maps (its maps are split or kept as the unmapping sites need)';
  if (!v.advice && !v.foreign && v.cuts + v.straddles === 0 && v.misses === v.missesAfterOverUnmap && !v.behaviours.legacy.leftMapped) {
    return "nothing: its unmaps that hit nothing follow another unmap's over-unmap (change that site)";
  }
  if (v.readiness === 1 && !v.foreign) return 'nothing: every unmap already removes whole maps';
  const s = main(strategies);
  const advice = v.advice ?? v.verdict.join('; ');
  if (s === 'split-maps') return `${advice} (the migration maps in the pieces its unmaps use)`;
  if (s === 'widen-unmaps') return `${advice} (the migration unmaps whole maps and maps back what must stay)`;
  return advice;
}

const fmtRanges = (p: Problem) => p.ranges.map((r) => `${hex(r.iova)}+${formatSize(r.size)}`).join(', ');

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
    row('IOTLB invalidations', `${c.before.invalidations} (${formatSize(c.before.invalidatedBytes)})`, `${c.after.invalidations} (${formatSize(c.after.invalidatedBytes)})`),
  ];
}

export function checkLines(r: MigrationResult): string[] {
  const n = (k: ProblemKind) => r.counts[k] ?? 0;
  const mark = (ok: boolean) => (ok ? 'ok  ' : 'FAIL');
  const c1 = n('rejected') + n('over-unmap') + n('left-mapped') + n('flagged');
  const c2 = n('intent-changed') + n('lost');
  return [
    `${mark(c1 === 0)} 1. strict replay: ${n('rejected')} refused, ${n('over-unmap')} over-unmap, ${n('left-mapped')} leave pages mapped, ${n('flagged')} flagged`,
    `${mark(c2 === 0)} 2. intent: ${n('intent-changed')} differences, ${n('lost')} pages lost; ${n('bug-fixed')} bugs fixed where the source over-unmapped, left mapped or refused${n('unfixed') ? `, ${n('unfixed')} lost in both` : ''}`,
    `     3. cost: ${Object.entries(r.cost)
      .map(([d, c]) => `${d}: ${c.before.maps}+${c.before.unmaps} -> ${c.after.maps}+${c.after.unmaps} map+unmap calls, peak tables ${memText(c.before.peakTableBytes)} -> ${memText(c.after.peakTableBytes)}, ${c.before.invalidations} -> ${c.after.invalidations} invalidations`)
      .join('; ')}`,
    ...(n('not-migrated') ? [`     not migrated (kept as they are, out of scope): ${n('not-migrated')} findings that do not fail the check`] : []),
    ...(n('rejected-in-source') ? [`     refused in the source too: ${n('rejected-in-source')}`] : []),
  ];
}

export function markdown(rep: Report): string {
  const r = rep.result;
  const L: string[] = [];
  L.push(`# Migration report: ${r.migration}`, '');
  if (rep.staleSource) L.push(`> The source was upgraded (${rep.staleSource}) and not rebuilt: its caller analysis ("before") is incomplete. Run \`iommu-ledger rebuild\` on it first.`, '');
  L.push(`- source: \`${r.source}\` (${r.sourceEvents} events, unchanged)`);
  L.push(`- migrated ledger: \`${r.out}\` (${r.migratedEvents} events; each linked to its source event by \`from.derivedFrom\`)`);
  if (r.scope !== undefined) L.push(`- scope: caller \`${r.scope}\` only; other callers' commands are kept as they are`);
  L.push(`- commands per strategy: ${Object.entries(r.strategies).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
  L.push('', `## Verdict: ${r.passed ? 'PASSED' : 'FAILED'}`, '');
  L.push('```', ...checkLines(r), '```', '');
  L.push('Checked by replaying the migrated history under strict unmap (VFIO type1 v2 / iommufd semantics).');
  const src = Object.entries(r.onSourceBehaviour);
  if (src.length) {
    L.push(
      'On the source hardware and its own unmap behaviour the migrated commands give: ' +
        src.map(([d, s]) => `${d} (${s.semantics}): ${s.overUnmaps} over-unmap (${formatSize(s.overBytes)}), ${s.leftMapped} leave mapped (${formatSize(s.leftBytes)})`).join('; ') +
        '.',
    );
  }
  L.push('', '## Cost, before and after', '', '| domain | measure | before | after |', '|---|---|---|---|');
  for (const [d, c] of Object.entries(r.cost)) L.push(...costRows(d, c));
  L.push('', '## Call sites: what to change', '');
  for (const s of rep.sites) {
    L.push(`### ${s.caller}${s.site ? ` at \`${s.site}\`` : ''} (domain ${s.domain})`, '');
    L.push(`- strategy: ${Object.entries(s.strategies).map(([k, v]) => `${k} (${v} commands)`).join(', ')}`);
    if (s.before) {
      const bv = s.before;
      L.push(`- before: ${bv.maps} maps, ${bv.unmaps} unmaps (${bv.exact} exact, ${bv.spans} whole maps, ${bv.cuts} cuts, ${bv.straddles} straddles, ${bv.misses} misses, ${bv.foreign} reach another caller's map); readiness ${pct(bv.readiness)}`);
      if (bv.verdict.length) L.push(`- ${bv.verdict.join('; ')}`);
    }
    if (s.after) L.push(`- after: ${s.after.maps} maps, ${s.after.unmaps} unmaps; readiness ${pct(s.after.readiness)}`);
    L.push(`- **change in the source:** ${s.change}`);
    const fails = s.problems.filter((p) => FAILING.has(p.kind));
    for (const p of fails.slice(0, 5)) L.push(`- ${KIND_TEXT[p.kind]} at #${p.position}: ${p.detail} [${fmtRanges(p)}]`);
    if (fails.length > 5) L.push(`- … ${fails.length - 5} more listed in the JSON report`);
    L.push('');
  }
  const listed = r.problems.filter((p) => p.kind !== 'rejected-in-source');
  if (listed.length) {
    L.push('## Findings by position', '', '| # | migrated # | kind | caller | ranges | detail |', '|---|---|---|---|---|---|');
    for (const p of listed.slice(0, 200)) {
      L.push(`| ${p.position} | ${p.migratedPosition ?? ''} | ${KIND_TEXT[p.kind]} | ${p.caller} | ${fmtRanges(p)} | ${p.detail.replace(/\|/g, '\\|')} |`);
    }
    if (listed.length > 200) L.push('', `… ${listed.length - 200} more in the JSON report (which keeps the first 1000 of each kind; the counts above are complete).`);
    L.push('');
  }
  L.push(`Follow any position with \`iommu-ledger --db ${r.source} explain IOVA --at POSITION\`.`, '');
  return L.join('\n');
}

const pct = (x: number) => `${Math.round(x * 100)}%`;

/** Page-table memory: a size like 16K when it is whole KiB, else bytes (formatSize would print hex). */
function memText(n: number): string {
  return n % 1024 === 0 ? formatSize(BigInt(n)) : `${n} bytes`;
}

/** JSON with bigints as "0x" strings. */
export function reportJson(rep: Report): string {
  return JSON.stringify(rep, (_k, v: unknown) => (typeof v === 'bigint' ? hex(v) : v), 2);
}
