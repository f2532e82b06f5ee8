/**
 * Helpers for the tests on real Linux 6.1 captures (test/fixtures/real, cut from
 * /work/captures/res-* /trace.txt; each test names its capture and line range):
 * - an independent reader of the ftrace lines these captures hold (a regex, not src/import);
 * - a plain replay of the records, the reference the import's address spaces are held to: each
 *   map adds a layer over its range, each unmap removes one layer over the range the kernel
 *   reports it removed, [iova, iova + unmapped_size); an unmap that finds part of that range
 *   unmapped takes first the maps printed after it with the same timestamp by another CPU,
 *   inside its range (ftrace merges the CPUs' buffers by timestamp, CPU 0 first on a tie);
 * - the union of the import's spaces (depth per 4K page) read from the ledger's queries;
 * - the stored events, in order.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Queries } from '../../src/projections/queries.js';

export const REAL = fileURLToPath(new URL('../fixtures/real', import.meta.url));
export const fixture = (name: string): string => join(REAL, name);

export interface RealRecord {
  line: number;
  task: string;
  cpu: number;
  ts: string;
  event: 'map' | 'unmap';
  iova: bigint;
  size: bigint;
  paddr?: bigint;
  unmapped?: bigint;
}

const RECORD =
  /^\s*(.+)-(\d+)\s+\[(\d+)\](?:\s+\S{4,7})?\s+(\d+\.\d+): (map|unmap): IOMMU: iova=0x([0-9a-f]+) - 0x([0-9a-f]+) (?:paddr=0x([0-9a-f]+) )?size=(\d+)(?: unmapped_size=(\d+))?\s*$/;

/** The map and unmap records of a capture's text (Linux 6.1 range form), with their line numbers. */
export function realRecords(text: string): RealRecord[] {
  const out: RealRecord[] = [];
  text.split('\n').forEach((l, i) => {
    const m = RECORD.exec(l);
    if (!m) return;
    const r: RealRecord = {
      line: i + 1,
      task: m[1]!.trim(),
      cpu: Number(m[3]),
      ts: m[4]!,
      event: m[5] as 'map' | 'unmap',
      iova: BigInt(`0x${m[6]}`),
      size: BigInt(m[9]!),
    };
    if (BigInt(`0x${m[7]}`) !== r.iova + r.size) throw new Error(`line ${r.line}: the range's end is not iova + size`);
    if (m[8] !== undefined) r.paddr = BigInt(`0x${m[8]}`);
    if (m[10] !== undefined) r.unmapped = BigInt(m[10]);
    out.push(r);
  });
  return out;
}

/** Lines of the text that are this event (io_page_fault, attach_device_to_domain, ...). */
export function linesOf(text: string, event: string): number[] {
  const out: number[] = [];
  text.split('\n').forEach((l, i) => {
    if (new RegExp(`\\s\\d+\\.\\d+: ${event}: `).test(l)) out.push(i + 1);
  });
  return out;
}

/** Mapping depth per 4K page index (pages mapped in at least one layer). */
export type Depth = Map<number, number>;

const PAGE = 12n;

function pagesOf(start: bigint, end: bigint): number[] {
  const out: number[] = [];
  for (let p = start >> PAGE; p < (end + 4095n) >> PAGE; p++) out.push(Number(p));
  return out;
}

export interface Replay {
  /** Depth at the end, and after each line asked for. */
  depth: Depth;
  at: Map<number, Depth>;
  /** Maps taken before an unmap printed before them (same timestamp, another CPU). */
  pulls: number;
  /** Unmaps whose kernel range found nothing mapped in any layer (pre-trace mappings), and their bytes. */
  foundNothing: Array<{ line: number; bytes: bigint }>;
  /** Unmaps that found part of their range mapped and part not. */
  foundPart: number[];
  /** The deepest any page got (2: the same IOVA live in two domains at once). */
  maxDepth: number;
}

/**
 * The plain replay (see the file comment). `snapshots`: lines after which to copy the depth;
 * each must end a timestamp group (a pause of the trace), as the group is replayed whole.
 */
export function plainReplay(text: string, snapshots: number[] = []): Replay {
  const recs = realRecords(text);
  const depth: Depth = new Map();
  const r: Replay = { depth, at: new Map(), pulls: 0, foundNothing: [], foundPart: [], maxDepth: 0 };
  const want = new Set(snapshots);
  const covered = (s: bigint, e: bigint) => pagesOf(s, e).every((p) => (depth.get(p) ?? 0) > 0);
  const play = (x: RealRecord) => {
    if (x.event === 'map') {
      for (const p of pagesOf(x.iova, x.iova + x.size)) {
        const d = (depth.get(p) ?? 0) + 1;
        depth.set(p, d);
        if (d > r.maxDepth) r.maxDepth = d;
      }
      return;
    }
    const pages = pagesOf(x.iova, x.iova + x.unmapped!);
    const live = pages.filter((p) => (depth.get(p) ?? 0) > 0).length;
    if (pages.length && live === 0) r.foundNothing.push({ line: x.line, bytes: x.unmapped! });
    else if (live < pages.length) r.foundPart.push(x.line);
    for (const p of pages) {
      const d = depth.get(p) ?? 0;
      if (d > 1) depth.set(p, d - 1);
      else depth.delete(p);
    }
  };
  let i = 0;
  while (i < recs.length) {
    let j = i;
    while (j < recs.length && recs[j]!.ts === recs[i]!.ts) j++;
    const g = recs.slice(i, j);
    for (let k = 0; k < g.length; k++) {
      const u = g[k]!;
      if (u.event === 'unmap' && u.unmapped! > 0n && !covered(u.iova, u.iova + u.unmapped!)) {
        const m = g.findIndex((x, n) => n > k && x.event === 'map' && x.cpu !== u.cpu && x.iova >= u.iova && x.iova + x.size <= u.iova + u.unmapped!);
        if (m > k) {
          g.splice(k, 0, ...g.splice(m, 1));
          r.pulls++;
        }
      }
      play(g[k]!);
    }
    const last = recs[j - 1]!.line;
    if (want.has(last)) r.at.set(last, new Map(depth));
    i = j;
  }
  return r;
}

/** The lines that end a pause of the trace: the last record before more than `gapNs` without one. */
export function pauses(text: string, gapNs = 1_000_000n): number[] {
  const recs = realRecords(text);
  const out: number[] = [];
  const ns = (ts: string) => {
    const [s, f = ''] = ts.split('.');
    return BigInt(s!) * 1_000_000_000n + BigInt(f.padEnd(9, '0'));
  };
  for (let i = 0; i + 1 < recs.length; i++) if (ns(recs[i + 1]!.ts) - ns(recs[i]!.ts) > gapNs) out.push(recs[i]!.line);
  return out;
}

/** A depth as readable runs: "0xSTART-0xEND xDEPTH". */
export function runsOf(d: Depth): string[] {
  const keys = [...d.keys()].sort((a, b) => a - b);
  const out: string[] = [];
  let s: number | undefined;
  let prev = -2;
  let dep = 0;
  const close = () => {
    if (s !== undefined) out.push(`0x${(BigInt(s) << PAGE).toString(16)}-0x${(BigInt(prev + 1) << PAGE).toString(16)} x${dep}`);
  };
  for (const k of keys) {
    const v = d.get(k)!;
    if (k !== prev + 1 || v !== dep) {
      close();
      s = k;
      dep = v;
    }
    prev = k;
  }
  close();
  return out;
}

/** The union of the spaces (how many of them map each page) just after position `at` (default: now). */
export function ledgerDepth(db: string, spaces: string[], at?: number): Depth {
  const q = new Queries(db, { readonly: true });
  try {
    const d: Depth = new Map();
    for (const sp of spaces) {
      for (const pg of q.stateAt(sp, at).pages) for (const p of pagesOf(pg.iova, pg.iova + pg.pageSize * pg.count)) d.set(p, (d.get(p) ?? 0) + 1);
    }
    return d;
  } finally {
    q.close();
  }
}

/** Mapped byte ranges of one space (merged, page sizes left out: profiles split pages differently). */
export function mappedRanges(db: string, space: string, at?: number): string[] {
  const q = new Queries(db, { readonly: true });
  try {
    const d: Depth = new Map();
    for (const pg of q.stateAt(space, at).pages) for (const p of pagesOf(pg.iova, pg.iova + pg.pageSize * pg.count)) d.set(p, (d.get(p) ?? 0) + 1);
    return runsOf(d);
  } finally {
    q.close();
  }
}

export interface StoredEvent {
  position: number;
  id: string;
  type: string;
  stream: string;
  data: {
    body: Record<string, unknown>;
    who?: { caller?: string; task?: string; pid?: number; cpu?: number };
    from?: { source?: string; digest?: string; line?: number };
  };
}

/** Every event of a ledger file, in order. */
export function storedEvents(db: string): StoredEvent[] {
  const raw = new Database(db, { readonly: true });
  try {
    const rows = raw
      .prepare('SELECT e.position, e.event_id, e.type, s.name, e.data FROM stored_events e JOIN streams s ON s.id = e.stream ORDER BY e.position')
      .all() as Array<{
      position: number;
      event_id: string;
      type: string;
      name: string;
      data: string;
    }>;
    return rows.map((r) => ({ position: r.position, id: r.event_id, type: r.type, stream: r.name, data: JSON.parse(r.data) as StoredEvent['data'] }));
  } finally {
    raw.close();
  }
}

/**
 * The position after which the ledger holds exactly the map/unmap events of lines <= `line`
 * (undefined when an event of a later line comes before one of those: no such position).
 */
export function positionAfterLine(events: StoredEvent[], line: number): number | undefined {
  let p = 0;
  let later = false;
  for (const e of events) {
    if (e.type !== 'map' && e.type !== 'unmap') continue;
    if ((e.data.from?.line ?? 0) <= line) {
      if (later) return undefined;
      p = e.position;
    } else later = true;
  }
  return p;
}
