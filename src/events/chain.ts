/**
 * The hash chain: each event's SHA-256 over the previous event's hash and its own canonical
 * envelope. What `append` hashes, what `verify` and rebuild's fold check, and how a break is
 * described. The checks read the file through any connection to it (the store's own, or a
 * read-only one on another thread: chain-check.ts).
 */
import { hash } from 'node:crypto';
import type { DB } from './db.js';

/**
 * Canonical bytes of an event: what the hash covers. Each field is length-prefixed
 * (`LEN:TEXT`), so no field's content can be mistaken for another's.
 */
export function envelope(e: {
  position: number;
  stream: string;
  version: number;
  type: string;
  schemaVersion: number;
  id: string;
  recordedAt: string;
  time: string | null;
  data: string;
}): string {
  const p = String(e.position);
  const v = String(e.version);
  const sv = String(e.schemaVersion);
  const t = e.time ?? '\u0000';
  return `${p.length}:${p}${e.stream.length}:${e.stream}${v.length}:${v}${e.type.length}:${e.type}${sv.length}:${sv}${e.id.length}:${e.id}${e.recordedAt.length}:${e.recordedAt}${t.length}:${t}${e.data.length}:${e.data}`;
}

/** The hash before the first event: 64 zeros. */
export const GENESIS = '0'.repeat(64);

/**
 * SHA-256 over the previous hash (64 lower-case hex digits) followed by the canonical envelope,
 * as lower-case hex. One-shot over one string: the cheapest form Node offers.
 */
export function chainHash(prevHex: string, env: string): string {
  return hash('sha256', prevHex + env, 'hex');
}

/**
 * The columns of `stored_events e` that one link of the hash chain needs after the position: the
 * envelope's fields before the time as one text (null when the row names a missing domain or
 * origin), the time, the data and the stored hash in lower-case hex. Built by SQLite: cheaper than
 * building the envelope from the fields in JavaScript.
 */
export const CHAIN_COLUMNS = `length(e.position)||':'||e.position||length(e.stream_name)||':'||e.stream_name||length(e.version)||':'||e.version||
  length(e.type)||':'||e.type||length(e.schema_version)||':'||e.schema_version||length(e.event_id)||':'||e.event_id||
  length(e.recorded_at)||':'||e.recorded_at, e.time, e.data, lower(hex(e.hash))`;

/** How far a walk of the hash chain has got: the hash of the last event checked, the position expected next, the events checked. */
export class ChainWalk {
  prev = GENESIS;
  expected = 1;
  events = 0;
  /** Where the chain broke, once a walk has found it. */
  broken: VerifyResult | undefined;

  /** @param onBreak told of the first break (it may throw, to stop a fold that checks the chain as it reads) */
  constructor(private readonly onBreak?: (r: VerifyResult) => void) {}

  broke(r: VerifyResult): void {
    this.broken = r;
    this.onBreak?.(r);
  }

  /** The walk's result: where it broke, else intact up to the last event checked. */
  result(): VerifyResult {
    return this.broken ?? this.intact();
  }

  /** The result of a walk that reached the end of the log without a break. */
  intact(): VerifyResult {
    const n = this.events;
    return {
      ok: true,
      events: n,
      head: this.prev,
      message: `intact: ${n} events, hash chain verified from the first to position ${n}; head hash ${this.prev} (to detect a cut-off tail or a re-hashed rewrite later, keep a checkpoint: iommu-ledger checkpoint)`,
    };
  }
}

export interface VerifyResult {
  ok: boolean;
  events: number;
  /** The first position where the chain breaks, and how. */
  firstBad?: number;
  /** The last event's hash (when intact). */
  head?: string;
  problem?: 'changed' | 'removed' | 'reordered' | 'inserted';
  message: string;
}

/**
 * Walks the hash chain from the first event; reports the first position that does not fit.
 *
 * Each row is checked exactly as `append` hashed it (the same envelope, the same SHA-256,
 * compared with the stored digest); only the reading is arranged to be cheap, because it costs
 * more than the hashing (measured on a 1M-event ledger, docs/architecture.md#verify):
 * - SQLite builds the envelope's fields up to `recorded_at` as one text (`length(x)||':'||x`
 *   for each), so five values cross to JavaScript per row instead of ten. SQLite's `length`
 *   counts characters where JavaScript counts UTF-16 units, so a name or id with a character
 *   outside the BMP gives a different text: any row whose hash does not match is read again
 *   field by field and checked with `envelope()` itself before it is called bad;
 * - the stored hash comes as lower-case hex text made by SQLite (`lower(hex(hash))`, the same
 *   text as `Buffer#toString('hex')` of the BLOB a STRICT table holds);
 * - rows come as arrays, a page of 1024 at a time (cheaper per row than an iterator).
 */
export function verifyChain(db: DB, onProgress?: (done: number) => void): VerifyResult {
  const walk = new ChainWalk();
  return walkLinks(db, walk, { onProgress }) ?? walk.intact();
}

/**
 * The chain walked from position `from` on, the link before it taken as it is stored (its hash
 * is not checked here): what a second thread walks while the first walks up to `from`. Undefined
 * when there is no event before `from` (nothing to start from).
 */
export function verifyChainFrom(db: DB, from: number, onProgress?: (done: number) => void): VerifyResult | undefined {
  const prev = db
    .prepare<[number], string>('SELECT lower(hex(hash)) FROM events WHERE position = ?')
    .pluck()
    .get(from - 1);
  if (prev === undefined) return undefined;
  const walk = new ChainWalk();
  walk.prev = prev;
  walk.expected = from;
  return walkLinks(db, walk, { after: from - 1, onProgress }) ?? walk.intact();
}

/** The lowest position a page can start after: every stored row, whatever its position, comes after it. */
const BELOW_ALL = -(1n << 63n);

/**
 * Walks the links of the rows stored after position `after` (default: every row) in position
 * order, up to and including `through` (default: the last): the first break, else undefined (the
 * walk has moved past every row read). `onProgress` is told the walk's count every 65,536 events.
 */
export function walkLinks(
  db: DB,
  walk: ChainWalk,
  range: { after?: number; through?: number; onProgress?: ((done: number) => void) | undefined } = {},
): VerifyResult | undefined {
  const page = 1024;
  const stmt = db
    .prepare(`SELECT e.position, ${CHAIN_COLUMNS} FROM stored_events e WHERE e.position > ? ORDER BY e.position LIMIT ${page}`)
    .raw(true)
    .safeIntegers(false);
  const { through = Infinity, onProgress } = range;
  let after: number | bigint = range.after ?? BELOW_ALL;
  for (;;) {
    const rows = stmt.all(after) as Array<[number, string | null, string | null, string | null, string]>;
    for (const row of rows) {
      if (row[0] > through) return undefined;
      const bad = checkLink(db, walk, row[0], row[1], row[2], row[3], row[4]);
      if (bad) return bad;
      if (onProgress && walk.events % 65536 === 0) onProgress(walk.events);
    }
    if (rows.length < page) return undefined;
    after = rows[rows.length - 1]![0];
  }
}

/**
 * One more link of the hash chain walked by `walk` (verify, and rebuild's fold that checks the
 * chain as it reads: `readForFold`): the event at `position`, its envelope's head (the fields
 * before the time, as CHAIN_COLUMNS builds them; null when a part it names is missing), its
 * time, data and stored hash. Nothing when it holds (the walk moves on), else where and how the
 * chain breaks.
 */
export function checkLink(
  db: DB,
  walk: ChainWalk,
  position: number,
  head: string | null,
  time: string | null,
  data: string | null,
  stored: string,
): VerifyResult | undefined {
  const n = walk.events;
  if (position !== walk.expected) {
    const problem = position > walk.expected ? 'removed' : 'inserted';
    return {
      ok: false,
      events: n,
      firstBad: walk.expected,
      problem,
      message: `position ${walk.expected}: ${problem === 'removed' ? `missing (the next stored event is ${position})` : `an extra event, stored at position ${position}, comes before it`}; the chain is broken from there`,
    };
  }
  const t = time ?? '\u0000';
  // A part `stored_events` cannot make again (a row naming a missing domain or origin) reads as null.
  if (head === null || data === null || hash('sha256', `${walk.prev}${head}${t.length}:${t}${data.length}:${data}`, 'hex') !== stored) {
    const bad = checkRow(db, position, walk.prev, stored);
    if (bad) return { ...bad, events: n };
  }
  walk.prev = stored;
  walk.expected++;
  walk.events++;
  return undefined;
}

/**
 * One row checked the way `append` hashed it, field by field (verify's fast text did not match).
 * Nothing when it fits; else why not: per-stream versions rise by one with position, so a jump
 * means events were moved.
 */
function checkRow(db: DB, position: number, prev: string, stored: string): Omit<VerifyResult, 'events'> | undefined {
  const r = db
    .prepare(
      `SELECT e.stream, e.stream_name, e.version, e.type, e.schema_version, e.event_id, e.recorded_at, e.time, e.data
         FROM stored_events e WHERE e.position = ?`,
    )
    .raw(true)
    .safeIntegers(false)
    .get(position) as [number, string | null, number, string, number, string | null, string, string | null, string | null];
  const [streamId, name, version, type, schemaVersion, id, recordedAt, time, data] = r;
  if (name !== null && id !== null && data !== null) {
    const h = chainHash(prev, envelope({ position, stream: name, version, type, schemaVersion, id, recordedAt, time, data }));
    if (h === stored) return undefined;
  }
  const last = db.prepare('SELECT max(version) FROM events WHERE stream = ? AND position < ?').pluck().safeIntegers(false).get(streamId, position) as
    number | null;
  const lastVersion = last ?? 0;
  const problem = version !== lastVersion + 1 ? 'reordered' : 'changed';
  return {
    ok: false,
    firstBad: position,
    problem,
    message: `position ${position}: ${problem === 'reordered' ? `out of order (stream ${name} version ${version} after ${lastVersion})` : name === null ? `its stream (id ${streamId}) is missing from the streams table` : 'its content does not match the hash chain (changed or replaced)'}; everything before it is intact`,
  };
}
