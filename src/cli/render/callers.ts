/** `callers`: the table of callers and sites, and what each site that is not yet symmetric does. */
import { formatSize, hex } from '../../core/address.js';
import type { CallerFix, CallerNote, CallerView, UnmapExample } from '../../projections/callers.js';
import { table } from './format.js';

/** One row per caller and call site: how its unmaps relate to its maps. */
export function callersTable(c: CallerView[]): string {
  return table(
    ['DOMAIN', 'CALLER', 'SITE', 'MAPS', 'UNMAPS', 'EXACT', 'WHOLE MAPS', 'CUTS', 'STRADDLES', 'MISSES', "OTHERS'", 'READY'],
    c.map((x) => [
      x.domain,
      x.caller,
      x.site,
      x.maps,
      x.unmaps,
      x.exact,
      x.spans,
      x.cuts,
      x.straddles,
      x.misses,
      x.foreign,
      `${Math.round(x.readiness * 100)}%`,
    ]),
    { right: [3, 4, 5, 6, 7, 8, 9, 10, 11] },
  );
}

/**
 * The notes below the table on a site that unmaps other than whole maps (none for one that is
 * ready), as blocks to print one after another: the verdict, the outcome under each unmap
 * behaviour, the worst examples, the change to make.
 */
export function callerNotes(x: CallerView): string[] {
  if (x.exact + x.spans === x.unmaps && !x.foreign && !x.behaviours.legacy.leftMapped) return [];
  const b = x.behaviours;
  const blocks = [
    '',
    `${x.caller}${x.site ? ` at ${x.site}` : ''} (domain ${x.domain}): ${callerVerdict(x).join('; ')}.`,
    `  under legacy: ${b.legacy.overUnmaps} over-unmap (${formatSize(b.legacy.overBytes)}), ${b.legacy.leftMapped} leave mapped (${formatSize(b.legacy.leftBytes)});` +
      ` split: ${b.split.overUnmaps} over, ${b.split.leftMapped} leave mapped; strict: ${b.strict.refused} refused`,
  ];
  for (const e of x.examples) blocks.push(`  ${exampleText(e)}`);
  const advice = callerAdvice(x);
  if (advice) blocks.push(`  change: ${advice}`);
  return blocks;
}

/** A site with its words: the analysis, and `verdict` and `advice` made from its notes and fix. */
export type WordedCaller = CallerView & { verdict: string[]; advice?: string };

/** `callers --json` (and the migration report's sites): the analysis, with its sentences. */
export function withWords(v: CallerView): WordedCaller {
  const advice = callerAdvice(v);
  return { ...v, verdict: callerVerdict(v), ...(advice !== undefined ? { advice } : {}) };
}

const times = (k: number) => (k === 1 ? 'once' : `${k} times`);
const plural = (k: number) => (k === 1 ? '' : 's');

/** The site's notes as plain phrases: what its unmaps do, and under which behaviour they go wrong. */
export function callerVerdict(v: CallerView): string[] {
  return v.notes.map((n) => noteText(n, v.caller));
}

function noteText(n: CallerNote, caller: string): string {
  switch (n.kind) {
    case 'no-unmaps':
      return 'no unmaps';
    case 'symmetric':
      return 'symmetric: every unmap removes whole maps';
    case 'partial': {
      const what = [n.cuts ? `cuts a map ${times(n.cuts)}` : '', n.straddles ? `crosses a map's edge ${times(n.straddles)}` : ''].filter(Boolean).join(' and ');
      const r = n.risk;
      let risk: string;
      if (r.kind === 'over-unmapped') {
        risk = `over-unmapped ${formatSize(r.bytes)} in ${r.unmaps} unmap${plural(r.unmaps)} on this hardware (pages up to ${formatSize(r.largestPage)}`;
        risk += r.safePage ? `; the cuts are harmless only on pages up to ${formatSize(r.safePage)})` : ')';
      } else if (r.kind === 'page-dependent') {
        risk = `harmless on ${formatSize(r.largestPage)} pages, over-unmaps if that map used a page larger than ${formatSize(r.safePage)}`;
      } else {
        risk = 'harmless on these pages';
      }
      return `${what}; ${risk}`;
    }
    case 'steps':
      return n.others === 0
        ? `steps by the returned size: each of its ${n.stepped} over-unmap${plural(n.stepped)} removed a whole page of its own map and its next unmap started where that page ended (or the map did): nothing it still wanted was lost (VFIO's vfio_unmap_unpin() works this way)`
        : `steps by the returned size in ${n.stepped} of its over-unmaps; ${n.others} took pages somebody still relied on (audit over-unmaps --caller ${caller} lists them)`;
    case 'strict-refuses':
      return `strict unmap (VFIO type1 v2, iommufd) refuses ${n.refused} of them`;
    case 'leaves-mapped':
      return `leaves pages mapped ${times(n.unmaps)} under the legacy loop (${formatSize(n.bytes)}: it stops at a hole)`;
    case 'misses': {
      const after = n.afterOverUnmap;
      const why =
        after === n.misses
          ? "each right after another unmap had over-unmapped the range: not this caller's bug"
          : after
            ? `${after} of them right after another unmap had over-unmapped the range; the others: a double unmap, or a trace that starts mid-stream`
            : 'a double unmap, or a trace that starts mid-stream';
      return `unmaps nothing ${times(n.misses)} (${why})`;
    }
    case 'foreign':
      return `removes another caller's mapping ${times(n.unmaps)}`;
  }
}

/** What to change in the source, as one sentence (none when the analysis has nothing to say). */
export function callerAdvice(v: CallerView): string | undefined {
  const f: CallerFix | undefined = v.fix;
  if (!f) return undefined;
  const where = v.site ? `${v.caller} at ${v.site}` : v.caller;
  switch (f.kind) {
    case 'stepper':
      return `${where} steps by the returned size (correct under the 2011 semantics): to make it symmetric, unmap each map as it was mapped — migrate --strategy unmap-as-mapped --caller ${v.caller}`;
    case 'others-map-pieces': {
      const [m, u] = [formatSize(f.mapSize), formatSize(f.unmapSize)];
      return `${where} unmaps ${u} pieces of ${m} maps made by ${f.mappers.join(', ')}: ${f.others.join(', ')} should map in ${u} pieces, or ${v.caller} unmap the whole ${m} (and only its own maps)`;
    }
    case 'unmap-as-mapped':
      return `${where} unmaps ${formatSize(f.unmapSize)} across maps of ${formatSize(f.mapSize)}: unmap each map as it was mapped`;
    case 'own-pieces': {
      const [m, u] = [formatSize(f.mapSize), formatSize(f.unmapSize)];
      return `${where} maps ${m} and unmaps ${u} pieces: map in ${u} pieces or unmap the whole ${m}`;
    }
    case 'pieces': {
      const [m, u] = [formatSize(f.mapSize), formatSize(f.unmapSize)];
      return `${where} unmaps ${u} pieces of ${m} maps made by ${f.mappers.join(', ')}: map in ${u} pieces there, or unmap the whole ${m} here`;
    }
    case 'foreign':
      return `${where} unmaps ranges another caller mapped: unmap only what it mapped itself`;
    case 'double-unmaps':
      return `${where}: check for double unmaps (or import the trace from its start)`;
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
