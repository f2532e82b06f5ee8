/**
 * Checks an import of a real trace against what the kernel itself reported (docs/import.md,
 * "Checking an import against the trace"):
 * - divergences (the trace's unmapped_size vs the profile's prediction): 0 with the right profile;
 * - over-unmap findings vs the kernel's own count (unmaps with unmapped_size > size);
 * - the union of the inferred address spaces vs a plain replay of the records, at the end and at
 *   sampled points: each map adds its range, each unmap takes away, from one layer, the range the
 *   kernel reports it removed (core/observed.ts); depth = in how many domains a byte is mapped;
 * - the number of spaces.
 *
 *   node dist/scripts/check-trace.js TRACE [--profile NAME] [--samples N] [--skew US]
 *
 * Prints one JSON object. Exit 1 when a check fails. Needs a build (npm run build).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { kernelRange } from '../src/core/observed.js';
import { importTrace } from '../src/import/store.js';
import { parseTraceLine } from '../src/import/parse.js';
import { Ledger } from '../src/projections/ledger.js';
import { Queries } from '../src/projections/queries.js';

const args = process.argv.slice(2);
const file = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!file) {
  console.error('usage: check-trace TRACE [--profile NAME] [--samples N] [--skew US]');
  process.exit(2);
}
const opt = (k: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1] : undefined;
};
const samples = Number(opt('--samples') ?? 8);

/** Depth of mapping per byte, as merged [start, end, depth] pieces (depth > 0 only). */
type Depth = Map<bigint, bigint>; // boundary -> delta (a difference array)

function addRange(d: Depth, s: bigint, e: bigint, by: bigint): void {
  if (e <= s) return;
  d.set(s, (d.get(s) ?? 0n) + by);
  d.set(e, (d.get(e) ?? 0n) - by);
}

function pieces(d: Depth): Array<[bigint, bigint, bigint]> {
  const keys = [...d.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: Array<[bigint, bigint, bigint]> = [];
  let depth = 0n;
  for (let i = 0; i < keys.length; i++) {
    depth += d.get(keys[i]!)!;
    const next = keys[i + 1];
    if (next !== undefined && depth !== 0n) {
      const last = out[out.length - 1];
      if (last && last[1] === keys[i] && last[2] === depth) last[1] = next;
      else out.push([keys[i]!, next, depth]);
    }
  }
  return out;
}

/** A plain replay: a list of live ranges per layer would be exact; a depth map with clamping is enough here. */
class PlainReplay {
  private depth: Array<[bigint, bigint, bigint]> = [];
  private pending: Depth = new Map();
  private apply(): void {
    if (!this.pending.size) return;
    const d: Depth = new Map();
    for (const [s, e, k] of this.depth) addRange(d, s, e, k);
    for (const [k, v] of this.pending) d.set(k, (d.get(k) ?? 0n) + v);
    this.pending.clear();
    // Clamp at 0: an unmap of something never seen mapped (before the trace) removes nothing here.
    this.depth = pieces(d)
      .map(([s, e, k]) => [s, e, k < 0n ? 0n : k] as [bigint, bigint, bigint])
      .filter((p) => p[2] > 0n);
  }
  /** Is every byte of [s, e) mapped in at least one layer? */
  covers(s: bigint, e: bigint): boolean {
    let cur = s;
    for (const [a, b] of this.now()) {
      if (b <= cur) continue;
      if (a > cur) return false;
      cur = b;
      if (cur >= e) return true;
    }
    return cur >= e;
  }
  map(iova: bigint, size: bigint): void {
    addRange(this.pending, iova, iova + size, 1n);
  }
  unmap(s: bigint, e: bigint): void {
    this.apply();
    // Take one layer away only where something is mapped (clamped in apply).
    addRange(this.pending, s, e, -1n);
    this.apply();
  }
  now(): Array<[bigint, bigint, bigint]> {
    this.apply();
    return this.depth;
  }
}

const text = readFileSync(file, 'utf8').split('\n');
const kernel = { maps: 0, unmaps: 0, overUnmaps: 0 };
// Checkpoints are taken in pauses of the trace (over 1 ms without a record), which no ordering
// decision of the import crosses, so the ledger's events up to there are exactly those lines'.
const quiet: number[] = [];
let prev: { line: number; ns: bigint | undefined } | undefined;
for (let i = 0; i < text.length; i++) {
  const p = parseTraceLine(text[i]!);
  if (p.kind !== 'record') continue;
  if (p.record.event === 'map') kernel.maps++;
  if (p.record.event === 'unmap') {
    kernel.unmaps++;
    if (p.record.unmappedSize! > p.record.size!) kernel.overUnmaps++;
  }
  const ns = p.record.timestampNs;
  if (prev && prev.ns !== undefined && ns !== undefined && ns - prev.ns > 1_000_000n) quiet.push(prev.line);
  prev = { line: i + 1, ns };
}
if (prev) quiet.push(prev.line);
const checkpoints = new Set<number>();
for (let k = 1; k <= samples; k++) checkpoints.add(quiet[Math.floor((quiet.length - 1) * (k / samples))] ?? 0);

const dir = mkdtempSync(join(tmpdir(), 'check-trace-'));
const db = join(dir, 'l.db');
const ledger = new Ledger(db);
const t0 = Date.now();
const s = await importTrace(ledger, file, { profile: opt('--profile'), skewUs: opt('--skew') !== undefined ? Number(opt('--skew')) : undefined });
const ms = Date.now() - t0;
ledger.close();

// The ledger's union at a line: every space's state at the last event stored for a line <= it.
const q = new Queries(db, { readonly: true });
const posOfLine = new Map<number, number>();
for (const ev of (q as unknown as { db: import('better-sqlite3').Database }).db
  .prepare("SELECT position, json_extract(data, '$.from.line') AS line FROM stored_events WHERE type IN ('map', 'unmap')")
  .iterate() as Iterable<{ position: number; line: number | null }>) {
  if (ev.line !== null) posOfLine.set(Number(ev.line), Math.max(posOfLine.get(Number(ev.line)) ?? 0, Number(ev.position)));
}
const replay = new PlainReplay();
const mismatches: Array<{ line: number; bytes: string }> = [];
let lastPos = 0;
// Records of one printed timestamp are replayed together: an unmap that removes more than is
// mapped, followed by a map inside what it removed (from another CPU), comes after that map
// (the one piece of ordering the kernel's report proves; see docs/import.md).
let group: Array<{ no: number; r: import('../src/import/parse.js').TraceRecord }> = [];
const play = (r: import('../src/import/parse.js').TraceRecord) => {
  if (r.event === 'map') replay.map(r.iova!, r.size!);
  if (r.event === 'unmap') {
    const k = kernelRange(r.iova!, r.size!, r.unmappedSize!);
    replay.unmap(k.start, k.end);
  }
};
const flush = () => {
  const g = group;
  group = [];
  for (let i = 0; i < g.length; i++) {
    const u = g[i]!.r;
    if (u.event === 'unmap' && u.unmappedSize! > 0n) {
      const k = kernelRange(u.iova!, u.size!, u.unmappedSize!);
      if (!replay.covers(k.start, k.end)) {
        const j = g.findIndex((x, n) => n > i && x.r.event === 'map' && x.r.cpu !== u.cpu && x.r.iova! >= k.start && x.r.iova! + x.r.size! <= k.end);
        if (j > i) g.splice(i, 0, ...g.splice(j, 1));
      }
    }
    play(g[i]!.r);
  }
};
for (let i = 0; i < text.length; i++) {
  const no = i + 1;
  const p = parseTraceLine(text[i]!);
  if (p.kind === 'record' && (p.record.event === 'map' || p.record.event === 'unmap')) {
    if (group.length && group[0]!.r.timestamp !== p.record.timestamp) flush();
    group.push({ no, r: p.record });
  }
  lastPos = Math.max(lastPos, posOfLine.get(no) ?? 0);
  if (checkpoints.has(no)) flush();
  if (checkpoints.has(no)) {
    const d: Depth = new Map();
    for (const sp of s.spaces) {
      const st = q.stateAt(sp, lastPos);
      for (const pg of st.pages) addRange(d, pg.iova, pg.iova + pg.pageSize * pg.count, 1n);
    }
    const ours = pieces(d);
    const theirs = replay.now();
    let diff = 0n;
    const dd: Depth = new Map();
    for (const [a, b, k] of ours) addRange(dd, a, b, k);
    for (const [a, b, k] of theirs) addRange(dd, a, b, -k);
    for (const [a, b, k] of pieces(dd)) diff += (b - a) * (k < 0n ? -k : k);
    if (diff !== 0n) {
      mismatches.push({ line: no, bytes: `0x${diff.toString(16)}` });
      if (process.env.CHECK_TRACE_DEBUG)
        for (const [a, b, k] of pieces(dd).slice(0, 8)) console.error(`line ${no}: 0x${a.toString(16)}..0x${b.toString(16)} ledger-replay ${k}`);
    }
  }
}
const findings = q.findings({ kind: 'over-unmap' }).length;
const divergences = q.findings({ kind: 'divergence' }).length;
q.close();
rmSync(dir, { recursive: true, force: true });
const out = {
  trace: file,
  profile: s.profile,
  lines: s.lines,
  ms,
  linesPerSecond: Math.round((s.lines / ms) * 1000),
  spaces: s.spaces.length,
  divergences,
  overUnmapFindings: findings,
  kernelOverUnmaps: kernel.overUnmaps,
  beforeTrace: s.beforeTrace,
  reordered: s.reordered,
  unexplained: s.unexplained,
  unionMismatches: mismatches,
};
console.log(JSON.stringify(out));
process.exit(divergences === 0 && findings === kernel.overUnmaps && mismatches.length === 0 ? 0 : 1);
