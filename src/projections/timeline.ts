/**
 * The timeline of a ledger's address spaces, as data for `report` (cli/render/report.ts): every
 * run of pages with its lifetime (the events that made and removed it) and its caller, the used
 * parts of each space (the gaps between them are folded away in the picture), and the findings
 * that mark it: over-unmaps with their collateral, divergences, faults. Read from the projections
 * only (the `runs` table, the findings, the faults); nothing is replayed.
 */
import { fromDb } from './codec.js';
import type { FaultView, FindingView, Queries } from './queries.js';

/** One run of equal pages over its lifetime: [from, to) in event positions (`to` null: still live). */
export interface TimelineRun {
  iova: bigint;
  end: bigint;
  pageSize: bigint;
  from: number;
  to: number | null;
  /** The map event that made the pages, and its caller. */
  mapPos: number;
  caller: string;
}

export interface TimelineDomain {
  name: string;
  profile: string;
  semantics: string;
  /** Position of its domain-created event, and of its last event. */
  createdAt: number;
  lastAt: number;
  runs: TimelineRun[];
  /** The used IOVA ranges, merged, in order: what the picture shows (the rest is folded). */
  used: Array<{ start: bigint; end: bigint }>;
  overUnmaps: FindingView[];
  divergences: FindingView[];
  faults: FaultView[];
}

export interface TimelineOptions {
  domain?: string;
  /** Event positions to show, inclusive (default: all). */
  from?: number;
  to?: number;
}

interface RunRowRaw {
  iova: bigint;
  iova_last: bigint;
  page_size: bigint;
  map_pos: bigint;
  valid_from: bigint;
  valid_to: bigint | null;
}

/** Ranges closer than this fraction of the space's used bytes are drawn as one (their gap is shown). */
const KEEP_GAP_FRACTION = 1 / 64;

/** Merges ranges (sorted by start) whose gap is at most `gap` bytes. */
function mergeUsed(ranges: Array<{ start: bigint; end: bigint }>, gap: bigint): Array<{ start: bigint; end: bigint }> {
  const out: Array<{ start: bigint; end: bigint }> = [];
  for (const r of ranges) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end + gap) {
      if (r.end > last.end) last.end = r.end;
    } else out.push({ start: r.start, end: r.end });
  }
  return out;
}

export function readTimeline(q: Queries, o: TimelineOptions = {}): TimelineDomain[] {
  const from = o.from ?? 0;
  const to = o.to ?? Number.MAX_SAFE_INTEGER;
  const domains = q.domains().filter((d) => o.domain === undefined || d.name === o.domain);
  const st = q.db.prepare<[domain: number, to: number, from: number], RunRowRaw>(
    'SELECT iova, iova_last, page_size, map_pos, valid_from, valid_to FROM runs WHERE domain = ? AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?) ORDER BY valid_from, iova',
  );
  const last = q.db.prepare<[domain: number], { p: bigint | null }>('SELECT max(position) AS p FROM events WHERE stream = ?');
  const out: TimelineDomain[] = [];
  for (const d of domains) {
    const rows = st.all(d.id, to, from);
    const callers = q.callersOf(rows.map((r) => Number(r.map_pos)));
    const runs: TimelineRun[] = rows.map((r) => {
      const iova = fromDb(r.iova);
      const mapPos = Number(r.map_pos);
      return {
        iova,
        end: fromDb(r.iova_last) + 1n,
        pageSize: fromDb(r.page_size),
        from: Number(r.valid_from),
        to: r.valid_to === null ? null : Number(r.valid_to),
        mapPos,
        caller: callers.get(mapPos) ?? '(unknown)',
      };
    });
    const within = (f: { position: number }) => f.position >= from && f.position <= to;
    const overUnmaps = q.findings({ kind: 'over-unmap', domain: d.name }).filter(within);
    const divergences = q.findings({ kind: 'divergence', domain: d.name }).filter(within);
    const faults = q.faults({ domain: d.name }).filter(within);
    // The used parts: runs, collateral, fault addresses; merged where the gap is small.
    const ranges = [
      ...runs.map((r) => ({ start: r.iova, end: r.end })),
      ...overUnmaps.flatMap((f) => f.collateral.map((c) => ({ start: c.iova, end: c.iova + c.size }))),
      ...faults.map((f) => ({ start: f.iova, end: f.iova + 1n })),
    ].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const tight = mergeUsed(ranges, 0n);
    const bytes = tight.reduce((a, r) => a + (r.end - r.start), 0n);
    const used = mergeUsed(tight, bytes / BigInt(Math.round(1 / KEEP_GAP_FRACTION)));
    const lastAt = Number(last.get(d.id)?.p ?? BigInt(d.createdAt));
    out.push({
      name: d.name,
      profile: d.profile.name,
      semantics: d.profile.semantics,
      createdAt: d.createdAt,
      lastAt,
      runs,
      used,
      overUnmaps,
      divergences,
      faults,
    });
  }
  return out;
}

/** The trace time of about `samples` events spread over the ledger, as [position, time] in order (for the time axis). */
export function sampleTimes(q: Queries, samples: number): Array<[number, string]> {
  const step = Math.max(1, Math.ceil(q.lastPosition / samples));
  return q.db
    .prepare<[step: number], [position: bigint, time: string]>(
      'SELECT position, time FROM events WHERE time IS NOT NULL AND (position - 1) % ? = 0 ORDER BY position',
    )
    .raw(true)
    .all(step)
    .map(([p, t]): [number, string] => [Number(p), t]);
}
