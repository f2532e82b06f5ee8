/**
 * `report`: one self-contained HTML file of a ledger's address spaces over time (docs/report.md).
 * Everything is inlined (the data as JSON, the drawing script of report-client.ts, the styles),
 * so it opens offline in any browser and fetches nothing.
 */
import { formatSize, hex } from '../../core/address.js';
import type { TimelineDomain } from '../../projections/timeline.js';
import { CLIENT_JS } from './report-client.js';

/** A finding as the page shows it: where its marker goes, its one-line title, and explain's text for it. */
export interface ReportFinding {
  kind: 'over-unmap' | 'fault' | 'divergence';
  position: number;
  /** The IOVA the marker and `explain` point at. */
  iova: bigint;
  verdict?: string;
  /** Over-unmaps: the collateral ranges. */
  ranges: Array<{ start: bigint; end: bigint }>;
  title: string;
  /** `iommu-ledger explain IOVA --domain D --at POSITION`, as the CLI prints it. */
  explain?: string;
}

export interface ReportInput {
  ledger: string;
  generatedAt: string;
  domains: Array<{ timeline: TimelineDomain; findings: ReportFinding[] }>;
  times: Array<[number, string]>;
  events: number;
  counts: { maps: number; unmaps: number; faults: number };
  verify: { ok: boolean; head?: string; message: string };
  /** The commands that reproduce the figures. */
  commands: string[];
}

/**
 * Past this many runs in view, the page merges them into a raster of the plot's pixels instead of
 * drawing a rectangle each (level of detail, docs/report.md#limits-and-scale).
 */
export const RASTER_OVER = 20_000;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** JSON that is safe inside a script element (no `</script>`, no `<!--`). */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');

export function reportHtml(r: ReportInput): string {
  const callers: string[] = [];
  const callerIx = new Map<string, number>();
  const ix = (c: string) => {
    let i = callerIx.get(c);
    if (i === undefined) {
      i = callers.length;
      callers.push(c);
      callerIx.set(c, i);
    }
    return i;
  };
  const data = {
    ledger: r.ledger,
    times: r.times,
    callers,
    rasterOver: RASTER_OVER,
    domains: r.domains.map(({ timeline: t, findings }) => ({
      name: t.name,
      profile: t.profile,
      createdAt: t.createdAt,
      lastAt: t.lastAt,
      used: t.used.map((u) => [hex(u.start), hex(u.end)]),
      runs: encodeRuns(t, ix),
      findings: findings.map((f) => ({
        kind: f.kind,
        position: f.position,
        iova: hex(f.iova),
        ...(f.verdict ? { verdict: f.verdict } : {}),
        ranges: f.ranges.map((c) => [hex(c.start), hex(c.end)]),
        title: f.title,
        ...(f.explain ? { explain: f.explain } : {}),
      })),
    })),
  };
  const totals = r.domains.reduce(
    (a, d) => {
      for (const f of d.findings) {
        if (f.kind === 'over-unmap') a[f.verdict === 'stepped' ? 'stepped' : 'harmful']++;
        else a[f.kind === 'fault' ? 'faults' : 'divergences']++;
      }
      return a;
    },
    { harmful: 0, stepped: 0, faults: 0, divergences: 0 },
  );
  const domainRows = r.domains
    .map(({ timeline: t, findings }) => {
      const n = (k: string) => findings.filter((f) => f.kind === k).length;
      return `<tr><td>${esc(t.name)}</td><td>${esc(t.profile)}</td><td>${esc(t.semantics)}</td><td>#${t.createdAt}–#${t.lastAt}</td><td>${t.runs.length}</td><td>${n('over-unmap')}</td><td>${n('fault')}</td><td>${n('divergence')}</td></tr>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>iommu-ledger report: ${esc(r.ledger)}</title>
<meta name="generator" content="iommu-ledger report">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #111; }
h1 { font-size: 18px; margin: 0 0 8px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; }
#timeline { width: 100%; height: 460px; border: 1px solid #bbb; cursor: crosshair; display: block; }
#tip { position: absolute; display: none; background: #fffbe6; border: 1px solid #aaa; padding: 4px 6px; font-size: 12px; pointer-events: none; max-width: 520px; }
#explain { white-space: pre-wrap; background: #f6f6f6; border: 1px solid #ddd; padding: 8px; min-height: 3em; }
tr.finding { cursor: pointer; }
tr.finding.selected { background: #ffe9e9; }
.legend span { display: inline-block; margin-right: 14px; }
code { background: #f2f2f2; padding: 0 3px; }
</style>
</head>
<body>
<header id="summary">
<h1>iommu-ledger report of <code>${esc(r.ledger)}</code></h1>
<p>${r.events} events: ${r.counts.maps} maps, ${r.counts.unmaps} unmaps, ${r.counts.faults} faults. Over-unmaps: <b id="count-harmful">${totals.harmful}</b> harmful, <span id="count-stepped">${totals.stepped}</span> stepped; divergences from the profile: ${totals.divergences}. Hash chain: ${r.verify.ok ? `intact, head <code id="head">${esc(r.verify.head ?? '')}</code>` : `<b>broken</b>: ${esc(r.verify.message)}`}. Made ${esc(r.generatedAt)}.</p>
<table id="domains"><tr><th>domain</th><th>profile</th><th>unmap</th><th>events</th><th>runs shown</th><th>over-unmaps</th><th>faults</th><th>divergences</th></tr>
${domainRows}
</table>
<p>The same figures from the command line: ${r.commands.map((c) => `<code>${esc(c)}</code>`).join(', ')}.</p>
</header>
<section>
<label>Address space <select id="domain">${r.domains.map((d) => `<option>${esc(d.timeline.name)}</option>`).join('')}</select></label>
<button id="reset">reset view</button>
<span class="legend"><span>time (event position) →, IOVA ↓ (unused ranges folded: dashed lines)</span><span>rectangles: pages, coloured by caller</span><span style="color:#d00">▼ harmful over-unmap and its collateral</span><span style="color:#777">▼ stepped over-unmap</span><span>✕ IO page fault</span><span style="color:#e08000">◆ divergence</span><span>wheel: zoom time; Shift+wheel: zoom addresses; drag: pan; click a marker or a row: explain</span></span>
<canvas id="timeline"></canvas>
<div id="tip"></div>
<h2 style="font-size:15px">Explain</h2>
<pre id="explain">Click a marker or a finding below.</pre>
</section>
<section>
<h2 style="font-size:15px">Findings</h2>
<table id="findings"><tr><th>event</th><th>domain</th><th>kind</th><th>what</th></tr></table>
</section>
<script id="report-data" type="application/json">${scriptJson(data)}</script>
<script>${CLIENT_JS}</script>
</body>
</html>
`;
}

/**
 * A domain's runs as columns of small integers (about 20 bytes a run in the file, against ~57 as
 * hex strings): `f` the start event as a delta from the previous run's, `l` its lifetime in events
 * (-1: still mapped), `b` the used range (band) it lies in, `o` and `n` its offset in the band (as a
 * delta from the previous run's) and its length in units of `unit` bytes (the smallest page size among the runs), `p` log2 of its page
 * size, `c` its caller, `m` how many events before `f` its map event was; a column that repeats is
 * run-length coded (`runLength`). An offset or a length
 * past 2^53 units cannot be a JSON number: such a domain's runs go as hex strings (`hex`), as
 * 64-bit addresses need. The page's script decodes either.
 */
function encodeRuns(t: TimelineDomain, callerIx: (c: string) => number): Record<string, unknown> {
  const unit = t.runs.reduce((m, r) => (r.pageSize < m ? r.pageSize : m), t.runs[0]?.pageSize ?? 4096n);
  const cols = {
    f: [] as number[],
    l: [] as number[],
    b: [] as number[],
    o: [] as number[],
    n: [] as number[],
    p: [] as number[],
    c: [] as number[],
    m: [] as number[],
  };
  const LIMIT = 1n << 53n;
  let prev = 0;
  let prevOff = 0;
  let band = 0;
  for (const r of t.runs) {
    // The band holding the run (bands are sorted; runs are not, so search from the last one found).
    if (!(t.used[band] && r.iova >= t.used[band]!.start && r.iova < t.used[band]!.end)) {
      band = t.used.findIndex((u) => r.iova >= u.start && r.iova < u.end);
    }
    const off = (r.iova - t.used[band]!.start) / unit;
    const len = (r.end - r.iova) / unit;
    if (band < 0 || off >= LIMIT || len >= LIMIT) {
      return { unit: hex(unit), hex: t.runs.map((x) => [hex(x.iova), hex(x.end), hex(x.pageSize), x.from, x.to, callerIx(x.caller), x.mapPos]) };
    }
    cols.f.push(r.from - prev);
    prev = r.from;
    cols.l.push(r.to === null ? -1 : r.to - r.from);
    cols.b.push(band);
    cols.o.push(Number(off) - prevOff);
    prevOff = Number(off);
    cols.n.push(Number(len));
    cols.p.push(r.pageSize.toString(2).length - 1);
    cols.c.push(callerIx(r.caller));
    cols.m.push(r.from - r.mapPos);
  }
  const packed: Record<string, unknown> = { unit: hex(unit) };
  for (const [k, v] of Object.entries(cols)) packed[k] = runLength(v);
  return packed;
}

/** A column as [value, repeat, value, repeat, …] inside {r: …} when that is shorter (a caller, a band, a page size that repeat). */
function runLength(v: number[]): number[] | { r: number[] } {
  const r: number[] = [];
  for (let i = 0; i < v.length;) {
    let j = i + 1;
    while (j < v.length && v[j] === v[i]) j++;
    r.push(v[i]!, j - i);
    i = j;
  }
  return r.length < v.length ? { r } : v;
}

/** The one-line title of a finding, for the marker's tooltip and the findings table. */
export function findingTitle(kind: ReportFinding['kind'], caller: string, requested: { iova: bigint; size: bigint } | undefined, extra: string): string {
  const req = requested ? ` ${hex(requested.iova)}+${formatSize(requested.size)}` : '';
  return `${kind === 'fault' ? 'IO page fault' : kind === 'divergence' ? 'divergence' : 'over-unmap'}${caller ? ` by ${caller}` : ''}${req}${extra ? `: ${extra}` : ''}`;
}
