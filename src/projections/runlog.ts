/**
 * The run log: the page-table projection's changes as compact columnar blobs, so that the state of
 * a domain as of any event is decoded from a few blobs instead of fetched row by row (schema 5,
 * docs/architecture.md#stateat).
 *
 * - `run_log` rows hold what one flush of projection rows did to one domain: the runs born (every
 *   field, and the event that ended them when that is known at the flush) and the runs ended that
 *   were born in an earlier flush (row id and end).
 * - `run_snapshots` rows hold every live run of a domain just after an event, every
 *   `snapshotEvery`-th event of the domain.
 *
 * The state just after event p is then: the latest snapshot at or before p, minus the runs ended in
 * (snapshot, p], plus the runs born in (snapshot, p] that are still alive at p.
 *
 * Encoding (little-endian, the byte order of every platform Node runs on here): a header of four
 * u32 (format tag, entry count, byte length of the caller names, zero), then one column after the
 * other: the 8-byte columns first (so each stays 8-byte aligned), then the 4-byte caller column,
 * then the 1-byte ones, and last the caller names as a JSON array of strings (UTF-8). Integers that
 * may exceed 2^32 but stay below 2^53 (row ids, positions, page counts) are float64; addresses are
 * uint64. A run's caller (the caller of its map event) is its 1-based index in the names, 0 when
 * the blob does not know it. Blobs written before schema 7 (tag RUN1: an 8-byte header of tag and
 * count, no caller column, no names) still decode, with every caller unknown.
 */
import { endianness } from 'node:os';
import type Database from 'better-sqlite3';
import { fromDb } from './codec.js';
import { unreadable } from './corrupt.js';
import { getMeta } from './meta.js';

/** Format tags: a blob that does not start with its tag is refused. */
const RUNS_V1_TAG = 0x52554e31; // "RUN1": before schema 7, no callers
const RUNS_TAG = 0x52554e32; // "RUN2"
const ENDS_TAG = 0x454e4431; // "END1"

if (endianness() !== 'LE') throw new Error('iommu-ledger: the run log is encoded little-endian; this platform is big-endian');

/** Runs as columns. `to` is NaN while a run is live (or its end is not known to this blob). */
export interface RunColumns {
  n: number;
  id: Float64Array;
  iova: BigUint64Array;
  paddr: BigUint64Array;
  count: Float64Array;
  mapPos: Float64Array;
  from: Float64Array;
  to: Float64Array;
  /** log2 of the page size. */
  shift: Uint8Array;
  level: Uint8Array;
  prot: Uint8Array;
  /** The caller of each run's map event: 1-based index into `names`, 0 when not known (RUN1 blobs). */
  caller: Uint32Array;
  names: string[];
}

/** Ended runs: row id and the event that ended each. */
export interface EndColumns {
  n: number;
  id: Float64Array;
  to: Float64Array;
}

const RUN_V1_BYTES = 7 * 8 + 3;
const RUN_BYTES = 7 * 8 + 4 + 3;

export function emptyRuns(n = 0): RunColumns {
  return {
    n,
    id: new Float64Array(n),
    iova: new BigUint64Array(n),
    paddr: new BigUint64Array(n),
    count: new Float64Array(n),
    mapPos: new Float64Array(n),
    from: new Float64Array(n),
    to: new Float64Array(n),
    shift: new Uint8Array(n),
    level: new Uint8Array(n),
    prot: new Uint8Array(n),
    caller: new Uint32Array(n),
    names: [],
  };
}

/** Collects runs one at a time (growing columns), then encodes them. */
export class RunWriter {
  // Small at first: a durable single append writes a piece of one or two runs.
  private c: RunColumns = emptyRuns(4);
  private nameIdx = new Map<string, number>();
  n = 0;

  /** `caller`: the name of the caller of the run's map event, undefined when not known. */
  push(
    id: number,
    iova: bigint,
    paddr: bigint,
    shift: number,
    count: number,
    level: number,
    prot: number,
    mapPos: number,
    from: number,
    to: number,
    caller: string | undefined,
  ): void {
    if (this.n === this.c.n) this.grow();
    const c = this.c;
    const i = this.n++;
    if (caller === undefined) c.caller[i] = 0;
    else {
      let k = this.nameIdx.get(caller);
      if (k === undefined) {
        k = c.names.push(caller);
        this.nameIdx.set(caller, k);
      }
      c.caller[i] = k;
    }
    c.id[i] = id;
    c.iova[i] = iova;
    c.paddr[i] = paddr;
    c.shift[i] = shift;
    c.count[i] = count;
    c.level[i] = level;
    c.prot[i] = prot;
    c.mapPos[i] = mapPos;
    c.from[i] = from;
    c.to[i] = to;
  }

  private grow(): void {
    const old = this.c;
    const c = emptyRuns(old.n * 2);
    c.id.set(old.id);
    c.iova.set(old.iova);
    c.paddr.set(old.paddr);
    c.count.set(old.count);
    c.mapPos.set(old.mapPos);
    c.from.set(old.from);
    c.to.set(old.to);
    c.shift.set(old.shift);
    c.level.set(old.level);
    c.prot.set(old.prot);
    c.caller.set(old.caller);
    c.names = old.names;
    this.c = c;
  }

  /** The smallest and largest event position among the runs' births and known ends. */
  span(): { first: number; last: number } {
    let first = Infinity;
    let last = -Infinity;
    const c = this.c;
    for (let i = 0; i < this.n; i++) {
      if (c.from[i]! < first) first = c.from[i]!;
      if (c.from[i]! > last) last = c.from[i]!;
      if (c.to[i]! > last) last = c.to[i]!;
    }
    return { first, last };
  }

  encode(): Buffer {
    return encodeRuns(this.c, this.n);
  }
}

export function encodeRuns(c: RunColumns, n = c.n): Buffer {
  const names = c.names.length ? Buffer.from(JSON.stringify(c.names)) : undefined;
  const buf = Buffer.alloc(16 + n * RUN_BYTES + (names?.length ?? 0));
  buf.writeUInt32LE(RUNS_TAG, 0);
  buf.writeUInt32LE(n, 4);
  buf.writeUInt32LE(names?.length ?? 0, 8);
  let o = 16;
  const put = (a: Float64Array | BigUint64Array | Uint32Array | Uint8Array, width: number) => {
    const bytes = new Uint8Array(a.buffer, a.byteOffset, n * width);
    buf.set(bytes, o);
    o += n * width;
  };
  put(c.id, 8);
  put(c.iova, 8);
  put(c.paddr, 8);
  put(c.count, 8);
  put(c.mapPos, 8);
  put(c.from, 8);
  put(c.to, 8);
  put(c.caller, 4);
  put(c.shift, 1);
  put(c.level, 1);
  put(c.prot, 1);
  if (names) buf.set(names, o);
  return buf;
}

/** A blob's bytes in an ArrayBuffer at an 8-byte-aligned offset (copied only when they are not). */
function aligned(buf: Uint8Array): { ab: ArrayBufferLike; at: number } {
  if (buf.byteOffset % 8 === 0) return { ab: buf.buffer, at: buf.byteOffset };
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return { ab: copy.buffer, at: 0 };
}

/** What a blob is, for messages: a text, or a function that makes it (only when it is needed). */
export type BlobName = string | (() => string);
const nameOf = (what: BlobName): string => (typeof what === 'string' ? what : what());

/** The blob itself: SQLite hands back a Buffer for a BLOB, anything else where one belongs is damage. */
function blobOf(buf: unknown, what: BlobName): Uint8Array {
  if (!(buf instanceof Uint8Array)) throw unreadable(nameOf(what), `${buf === null ? 'NULL' : typeof buf} where a blob belongs`);
  return buf;
}

function tagOf(buf: Uint8Array, what: BlobName): number {
  if (buf.byteLength < 8) throw unreadable(nameOf(what), `a blob of ${buf.byteLength} bytes is shorter than its 8-byte header`);
  return new DataView(buf.buffer, buf.byteOffset, 8).getUint32(0, true);
}

function header(buf: Uint8Array, tag: number, width: number, what: BlobName): number {
  const t = tagOf(buf, what);
  if (t !== tag) throw unreadable(nameOf(what), `not a blob of this format (tag 0x${t.toString(16)})`);
  const n = new DataView(buf.buffer, buf.byteOffset, 8).getUint32(4, true);
  // Exact in doubles (n < 2^32, width < 2^7): a huge count cannot wrap around to the right length.
  if (buf.byteLength !== 8 + n * width) throw unreadable(nameOf(what), `${buf.byteLength} bytes for ${n} entries of ${width} bytes`);
  return n;
}

const MAX_EXACT = Number.MAX_SAFE_INTEGER;
/** A whole number from `min` up to 2^53 - 1 (an id, a position, a count), as a float64 column holds it. */
const isWhole = (v: number, min: number): boolean => Number.isInteger(v) && v >= min && v <= MAX_EXACT;

/**
 * Checks every entry of decoded runs before anyone trusts them: ids, counts and positions whole
 * and positive, an end that is none (NaN) or a position, a page shift below 64, a level below 16,
 * a caller index within the blob's names.
 */
function checkRuns(c: RunColumns, what: BlobName): void {
  for (let i = 0; i < c.n; i++) {
    const to = c.to[i]!;
    const bad = !isWhole(c.id[i]!, 1)
      ? `row id ${c.id[i]}`
      : !isWhole(c.count[i]!, 1)
        ? `page count ${c.count[i]}`
        : !isWhole(c.mapPos[i]!, 1)
          ? `map event ${c.mapPos[i]}`
          : !isWhole(c.from[i]!, 1)
            ? `start event ${c.from[i]}`
            : !(Number.isNaN(to) || isWhole(to, 1))
              ? `end event ${to}`
              : c.shift[i]! > 63
                ? `page shift ${c.shift[i]}`
                : c.level[i]! > 15
                  ? `level ${c.level[i]}`
                  : c.caller[i]! > c.names.length
                    ? `caller ${c.caller[i]} of ${c.names.length} names`
                    : undefined;
    if (bad !== undefined) throw unreadable(nameOf(what), `entry ${i + 1} of ${c.n} has ${bad}`);
  }
}

/** Columns over the blob's own bytes (no copy when aligned), every entry checked. */
export function decodeRuns(blob: Uint8Array, what: BlobName = 'a run log blob'): RunColumns {
  const buf = blobOf(blob, what);
  const tag = tagOf(buf, what);
  const v1 = tag === RUNS_V1_TAG;
  let n: number;
  let namesBytes = 0;
  if (v1) n = header(buf, RUNS_V1_TAG, RUN_V1_BYTES, what);
  else {
    if (tag !== RUNS_TAG) throw unreadable(nameOf(what), `not a blob of this format (tag 0x${tag.toString(16)})`);
    if (buf.byteLength < 16) throw unreadable(nameOf(what), `a blob of ${buf.byteLength} bytes is shorter than its 16-byte header`);
    const dv = new DataView(buf.buffer, buf.byteOffset, 16);
    n = dv.getUint32(4, true);
    namesBytes = dv.getUint32(8, true);
    if (buf.byteLength !== 16 + n * RUN_BYTES + namesBytes)
      throw unreadable(nameOf(what), `${buf.byteLength} bytes for ${n} entries and ${namesBytes} bytes of names`);
  }
  const { ab, at } = aligned(buf);
  let o = at + (v1 ? 8 : 16);
  const f64 = () => {
    const a = new Float64Array(ab, o, n);
    o += n * 8;
    return a;
  };
  const u64 = () => {
    const a = new BigUint64Array(ab, o, n);
    o += n * 8;
    return a;
  };
  const u8 = () => {
    const a = new Uint8Array(ab, o, n);
    o += n;
    return a;
  };
  const id = f64();
  const iova = u64();
  const paddr = u64();
  const count = f64();
  const mapPos = f64();
  const from = f64();
  const to = f64();
  let caller: Uint32Array;
  if (v1) caller = new Uint32Array(n);
  else {
    caller = new Uint32Array(ab, o, n);
    o += n * 4;
  }
  const shift = u8();
  const level = u8();
  const prot = u8();
  let names: string[] = [];
  if (namesBytes) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(ab, o, namesBytes).toString('utf8'));
    } catch (e) {
      throw unreadable(nameOf(what), `its caller names are not JSON: ${(e as Error).message}`);
    }
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw unreadable(nameOf(what), 'its caller names are not a list of texts');
    names = parsed as string[];
  }
  const c = { n, id, iova, paddr, count, mapPos, from, to, shift, level, prot, caller, names };
  checkRuns(c, what);
  return c;
}

export function encodeEnds(ids: readonly number[], tos: readonly number[]): Buffer {
  const n = ids.length;
  const buf = Buffer.alloc(8 + n * 16);
  buf.writeUInt32LE(ENDS_TAG, 0);
  buf.writeUInt32LE(n, 4);
  const { ab, at } = aligned(buf);
  new Float64Array(ab, at + 8, n).set(ids);
  new Float64Array(ab, at + 8 + n * 8, n).set(tos);
  return buf;
}

export function decodeEnds(blob: Uint8Array, what: BlobName = 'a blob of run ends'): EndColumns {
  const buf = blobOf(blob, what);
  const n = header(buf, ENDS_TAG, 16, what);
  const { ab, at } = aligned(buf);
  const e = { n, id: new Float64Array(ab, at + 8, n), to: new Float64Array(ab, at + 8 + n * 8, n) };
  for (let i = 0; i < n; i++) {
    if (!isWhole(e.id[i]!, 1) || !isWhole(e.to[i]!, 1)) throw unreadable(nameOf(what), `entry ${i + 1} of ${n} has row id ${e.id[i]} and end event ${e.to[i]}`);
  }
  return e;
}

/** One run_log row, decoded. */
export interface LogPiece {
  births: RunColumns;
  ends: EndColumns;
}

/**
 * The runs alive just after event p, sorted by IOVA: the snapshot taken at `snapAt` (<= p; none
 * means the empty state before the domain's first event) updated by the log pieces that follow it.
 * Pieces may hold entries outside (snapAt, p]; those are skipped.
 */
export function stateFrom(snapshot: RunColumns | undefined, snapAt: number, pieces: readonly LogPiece[], p: number): RunColumns {
  const ended = endedSet(snapshot, pieces, snapAt, p);
  // Survivors of the snapshot, in its (IOVA) order.
  const keep = new Int32Array(snapshot?.n ?? 0);
  let nKeep = 0;
  if (snapshot) {
    for (let i = 0; i < snapshot.n; i++) if (!ended.has(snapshot.id[i]!)) keep[nKeep++] = i;
  }
  // Births in (snapAt, p] still alive at p, as (piece, index) pairs.
  let nBorn = 0;
  for (const { births } of pieces) nBorn += births.n;
  const bornPiece = new Int32Array(nBorn);
  const bornIdx = new Int32Array(nBorn);
  nBorn = 0;
  pieces.forEach(({ births }, k) => {
    const from = births.from;
    const to = births.to;
    const id = births.id;
    for (let i = 0; i < births.n; i++) {
      const f = from[i]!;
      if (f <= snapAt || f > p || to[i]! <= p || ended.has(id[i]!)) continue;
      bornPiece[nBorn] = k;
      bornIdx[nBorn++] = i;
    }
  });
  // Sorted by IOVA: by its value as a double first, then exactly where doubles tie (above 2^53).
  // Caller names are merged into one list for the result.
  const names: string[] = [];
  const nameIdx = new Map<string, number>();
  const srcs = pieces.map(({ births }) => source(births, names, nameIdx));
  const key = new Float64Array(nBorn);
  for (let j = 0; j < nBorn; j++) key[j] = approx(srcs[bornPiece[j]!]!.iova, bornIdx[j]!);
  const snap = source(snapshot ?? emptyRuns(0), names, nameIdx);
  const order = new Int32Array(nBorn);
  for (let j = 0; j < nBorn; j++) order[j] = j;
  const iovaOf = (j: number) => pieces[bornPiece[j]!]!.births.iova[bornIdx[j]!]!;
  order.sort((x, y) => {
    const d = key[x]! - key[y]!;
    if (d !== 0) return d;
    const a = iovaOf(x);
    const b = iovaOf(y);
    return a < b ? -1 : a > b ? 1 : 0;
  });
  // Merge the two sorted lists (live runs never overlap, so IOVA order is total).
  const out = source(emptyRuns(nKeep + nBorn));
  out.c.names = names;
  let a = 0;
  let b = 0;
  for (let k = 0; k < out.c.n; k++) {
    let fromSnap = b >= nBorn;
    if (!fromSnap && a < nKeep) {
      const sk = approx(snap.iova, keep[a]!);
      const bk = key[order[b]!]!;
      fromSnap = sk < bk || (sk === bk && snapshot!.iova[keep[a]!]! < iovaOf(order[b]!));
    }
    if (fromSnap) copyRun(snap, keep[a++]!, out, k);
    else {
      const j = order[b++]!;
      copyRun(srcs[bornPiece[j]!]!, bornIdx[j]!, out, k);
    }
  }
  return out.c;
}

/**
 * The row ids ended in (snapAt, p]. Ids that matter are those of the snapshot and of the pieces'
 * births, a range that is dense in practice (row ids follow birth order): a bitmap over it, or a
 * Set when the range is too wide for one.
 */
function endedSet(snapshot: RunColumns | undefined, pieces: readonly LogPiece[], snapAt: number, p: number): { has(id: number): boolean } {
  let lo = Infinity;
  let hi = -Infinity;
  const span = (ids: Float64Array, n: number) => {
    for (let i = 0; i < n; i++) {
      const v = ids[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  };
  if (snapshot) span(snapshot.id, snapshot.n);
  for (const { births } of pieces) span(births.id, births.n);
  const width = hi - lo + 1;
  if (!(width > 0) || width > 1 << 28) {
    const set = new Set<number>();
    for (const { ends } of pieces) for (let i = 0; i < ends.n; i++) if (ends.to[i]! > snapAt && ends.to[i]! <= p) set.add(ends.id[i]!);
    return set;
  }
  const bits = new Uint32Array(Math.ceil(width / 32));
  for (const { ends } of pieces) {
    for (let i = 0; i < ends.n; i++) {
      const t = ends.to[i]!;
      if (t <= snapAt || t > p) continue;
      const o = ends.id[i]! - lo;
      if (o >= 0 && o < width) bits[o >>> 5]! |= 1 << (o & 31);
    }
  }
  return {
    has(id: number): boolean {
      const o = id - lo;
      return o >= 0 && o < width && (bits[o >>> 5]! & (1 << (o & 31))) !== 0;
    },
  };
}

/** The 32-bit halves of 64-bit columns (little-endian: low half first); copies without a bigint. */
function u32(a: BigUint64Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length * 2);
}

/** A 64-bit value of the column as the nearest double (exact below 2^53; order-preserving, not strictly). */
function approx(h: Uint32Array, i: number): number {
  return h[2 * i + 1]! * 4294967296 + h[2 * i]!;
}

/**
 * Columns with 32-bit views of their 64-bit address columns, for copying without bigints, and the
 * index of each of their caller names in the result's names (`caller` stays 0, unknown, at 0).
 */
interface Source {
  c: RunColumns;
  iova: Uint32Array;
  paddr: Uint32Array;
  caller: Uint32Array;
}

function source(c: RunColumns, names?: string[], nameIdx?: Map<string, number>): Source {
  const caller = new Uint32Array(c.names.length + 1);
  if (names && nameIdx) {
    c.names.forEach((name, k) => {
      let j = nameIdx.get(name);
      if (j === undefined) {
        j = names.push(name);
        nameIdx.set(name, j);
      }
      caller[k + 1] = j;
    });
  }
  return { c, iova: u32(c.iova), paddr: u32(c.paddr), caller };
}

function copyRun(s: Source, i: number, d: Source, k: number): void {
  const src = s.c;
  const dst = d.c;
  dst.id[k] = src.id[i]!;
  d.iova[2 * k] = s.iova[2 * i]!;
  d.iova[2 * k + 1] = s.iova[2 * i + 1]!;
  d.paddr[2 * k] = s.paddr[2 * i]!;
  d.paddr[2 * k + 1] = s.paddr[2 * i + 1]!;
  dst.count[k] = src.count[i]!;
  dst.mapPos[k] = src.mapPos[i]!;
  dst.from[k] = src.from[i]!;
  dst.to[k] = NaN;
  dst.shift[k] = src.shift[i]!;
  dst.level[k] = src.level[i]!;
  dst.prot[k] = src.prot[i]!;
  dst.caller[k] = s.caller[src.caller[i]!]!;
}

/** Merges log pieces into one (for compaction): entries are kept as they are. */
export function mergePieces(pieces: readonly LogPiece[]): { births: Buffer; ends: Buffer; first: number; last: number } {
  const w = new RunWriter();
  const ids: number[] = [];
  const tos: number[] = [];
  for (const { births: b, ends: e } of pieces) {
    for (let i = 0; i < b.n; i++) {
      const k = b.caller[i]!;
      w.push(
        b.id[i]!,
        b.iova[i]!,
        b.paddr[i]!,
        b.shift[i]!,
        b.count[i]!,
        b.level[i]!,
        b.prot[i]!,
        b.mapPos[i]!,
        b.from[i]!,
        b.to[i]!,
        k ? b.names[k - 1] : undefined,
      );
    }
    for (let i = 0; i < e.n; i++) {
      ids.push(e.id[i]!);
      tos.push(e.to[i]!);
    }
  }
  let { first, last } = w.span();
  for (const t of tos) {
    if (t < first) first = t;
    if (t > last) last = t;
  }
  return { births: w.encode(), ends: encodeEnds(ids, tos), first, last };
}

const SHIFT_OF = new Map<bigint, number>();
/** log2 of a power-of-two page size. */
export function shiftOf(pageSize: bigint): number {
  let s = SHIFT_OF.get(pageSize);
  if (s === undefined) {
    s = pageSize.toString(2).length - 1;
    if (1n << BigInt(s) !== pageSize) throw new RangeError(`page size ${pageSize} is not a power of two`);
    SHIFT_OF.set(pageSize, s);
  }
  return s;
}

const PAGE_SIZES = Array.from({ length: 64 }, (_, s) => 1n << BigInt(s));
/** The page size of a shift (one shared bigint per size). */
export function pageSizeOf(shift: number): bigint {
  return PAGE_SIZES[shift]!;
}

const statements = new WeakMap<Database.Database, Map<string, Database.Statement>>();
function stmt(db: Database.Database, sql: string): Database.Statement {
  let m = statements.get(db);
  if (!m) statements.set(db, (m = new Map()));
  let st = m.get(sql);
  if (!st) m.set(sql, (st = db.prepare(sql).raw(true).safeIntegers(false)));
  return st;
}

/**
 * The live runs of a domain just after event p, from the run log: the latest snapshot at or before
 * p and the pieces written after it up to p. A piece never holds entries on both sides of a
 * snapshot (the rows are flushed just before each snapshot, and small pieces are merged only after
 * the latest one), so the first_pos range selects exactly the pieces needed.
 */
export function runsFromLog(db: Database.Database, domain: number, p: number): RunColumns {
  const snap = stmt(db, 'SELECT position, data FROM run_snapshots WHERE domain = ? AND position <= ? ORDER BY position DESC LIMIT 1').get(domain, p) as
    [number, Buffer] | undefined;
  const s = snap ? snap[0] : 0;
  const rows = stmt(db, 'SELECT first_pos, births, ends FROM run_log WHERE domain = ? AND first_pos > ? AND first_pos <= ?').all(domain, s, p) as Array<
    [number, Buffer, Buffer]
  >;
  const dom = () => domainText(db, domain);
  const pieces: LogPiece[] = rows.map((r) => ({
    births: decodeRuns(r[1], () => `the run log of domain ${dom()} (run_log row from event #${r[0]}, births)`),
    ends: decodeEnds(r[2], () => `the run log of domain ${dom()} (run_log row from event #${r[0]}, ends)`),
  }));
  return stateFrom(snap ? decodeRuns(snap[1], () => `the snapshot of domain ${dom()} at event #${snap[0]} (run_snapshots)`) : undefined, s, pieces, p);
}

/** A domain by its name (and its number, when the streams table does not name it), for messages. */
export function domainText(db: Database.Database, domain: number): string {
  const name = db.prepare<[id: number], string>('SELECT name FROM streams WHERE id = ?').pluck().safeIntegers(false).get(domain);
  return name === undefined ? `#${domain}` : name;
}

/** False while a ledger upgraded to schema 5 has not been rebuilt: its run log starts in the middle. */
export function runLogComplete(db: Database.Database): boolean {
  return getMeta(db, 'run-log-needed') === undefined;
}

/** The same from the runs table alone: exact, and slow on a long history (a ledger whose log is not filled in yet). */
export function runsByRows(db: Database.Database, domain: number, p: number): RunColumns {
  const rows = stmt(
    db,
    `SELECT id, iova, paddr, page_size, count, level, prot, map_pos, valid_from FROM runs
      WHERE domain = ? AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?) ORDER BY iova`,
  )
    .safeIntegers(true)
    .all(domain, p, p) as bigint[][];
  const c = emptyRuns(rows.length);
  rows.forEach((r, i) => {
    c.id[i] = Number(r[0]);
    c.iova[i] = fromDb(r[1]!);
    c.paddr[i] = fromDb(r[2]!);
    c.shift[i] = shiftOf(fromDb(r[3]!));
    c.count[i] = Number(r[4]);
    c.level[i] = Number(r[5]);
    c.prot[i] = Number(r[6]);
    c.mapPos[i] = Number(r[7]);
    c.from[i] = Number(r[8]);
    c.to[i] = NaN;
  });
  return c;
}
