/**
 * The append-only event store: global positions, per-stream versions, a SHA-256 hash chain,
 * idempotent ids, and streaming reads. It knows nothing of IOMMUs; the ledger (projections
 * layer) decides what to append.
 */
import type Database from 'better-sqlite3';
import { LedgerFault } from '../core/errors.js';
import { openDatabase, type DB, type OpenOptions } from './db.js';
import { noteFault } from './io-errors.js';
import { decodeStoredEvent, upcast, type DecodedData, type EventType } from './schema.js';
import { eventName, parseStored, shown, unfitEvent } from './stored.js';
import { decodeChecked, type DecodedEvent } from './decode.js';
import { compactRow, importedIdParts, type OriginParts } from './compact.js';
import { chainHash, ChainWalk, CHAIN_COLUMNS, checkLink, envelope, GENESIS, verifyChain, type VerifyResult } from './chain.js';
import { SPLIT_VERIFY_FROM, verifyInTwo } from './chain-check.js';

export class ConcurrencyError extends LedgerFault {
  readonly exitCode = 2;
  constructor(
    readonly stream: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`stream ${stream}: expected version ${expected} but it is at ${actual} (another writer appended first); re-read and retry`);
    this.name = 'ConcurrencyError';
  }
}

export interface RawEvent {
  position: number;
  stream: string;
  version: number;
  type: EventType;
  schemaVersion: number;
  id: string;
  recordedAt: string;
  time: string | null;
  data: string;
}

const DOMAIN_NAME = /^[^\s]+$/;

/**
 * What is wrong with the envelope of a stored event as a command would carry it back (replay and
 * migrate turn events back into commands): its domain name, id and source time.
 */
function envelopeProblem(e: { stream: string; id: string; time: string | null }): string | undefined {
  if (e.stream.length < 1 || e.stream.length > 200 || !DOMAIN_NAME.test(e.stream))
    return `its domain name ${shown(e.stream)} is not one a command can give (1 to 200 characters, no spaces)`;
  if (typeof e.id !== 'string' || e.id.length < 1 || e.id.length > 200) return `its id is not 1 to 200 characters`;
  if (e.time !== null && (typeof e.time !== 'string' || e.time.length > 64)) return `its source time ${shown(e.time)} is not a text of at most 64 characters`;
  return undefined;
}

export interface StreamRow {
  id: number;
  name: string;
  version: number;
  profile: string;
  created_at: number;
  destroyed_at: number | null;
}

/** What `events` gets for one new event, in column order (the id and data as compact.ts stores them). */
type EventInsert = [
  position: number,
  stream: number,
  version: number,
  type: EventType,
  schemaVersion: number,
  id: string,
  recordedAt: string,
  time: string | null,
  data: string,
  hash: Buffer,
  origin: number | null,
  line: number | null,
];

export class EventStore {
  readonly db: DB;
  readonly path: string;
  private headPos = 0;
  private headHash: string = GENESIS;
  /**
   * The position of the row `readForFold` is at (0 before the first): where a fold that failed
   * stopped, whether its row did not fit or its folding failed.
   */
  foldAt = 0;
  /** Events this store committed since it was opened (its own, not another writer's). */
  private committed = 0;
  private txnStart = 0;
  private readonly insEvent: Database.Statement<EventInsert>;
  private readonly hasId: Database.Statement<[id: string], number>;
  private readonly hasLine: Database.Statement<[origin: number, line: number], number>;
  private readonly originsOfKey: Database.Statement<[key: string], number>;
  private readonly insOrigin: Database.Statement<[digest: string, name: string]>;
  private readonly originIdOf: Database.Statement<[digest: string, name: string], number>;
  /**
   * `origins` row ids used in the current write transaction, by digest and name, and by key (the
   * digest's first 24 hex digits): forgotten when a transaction starts or fails (a rollback takes
   * new rows away, and another writer may have added some).
   */
  private origins = new Map<string, Map<string, number>>();
  private keyOrigins = new Map<string, number[]>();
  /**
   * Whether an id of the form `KEY:LINE` is stored as given (written before schema 9, or with an
   * origin kept whole): if none, such an id is looked up by its line only. Ids the import gives
   * its domains and inferred mappings (`KEY:domain:NAME`, `KEY:LINE:before0`) are not of that form.
   */
  private keyHasStoredIds = new Map<string, boolean>();
  /** The largest line stored from each `origins` row, by id, once asked (`lastLineOf`); kept up to date by `append`. */
  private lineMax = new Map<number, number>();
  private readonly maxLine: Database.Statement<[origin: number], number | null>;
  private readonly storedIdWithKey: Database.Statement<[from: string, to: string], number>;
  private readonly headStmt: Database.Statement<[], { position: number; hash: Buffer }>;
  /**
   * The transaction function of write(), made once: better-sqlite3 builds its wrapper per
   * `transaction()` call, ~14 µs that a one-command append paid every time.
   */
  private readonly txn: Database.Transaction<(fn: () => unknown, onMoved?: () => void, onOther?: () => void) => unknown>;
  private readonly dataVersion: Database.Statement<[], number>;
  /**
   * SQLite's `data_version` as this connection read it in its last write transaction (undefined
   * before the first, and after one failed): while it reads the same, no other connection has
   * committed since, so the head, and what this store and its caller read of the file then, still
   * hold. Reading it costs far less than reading the head again.
   */
  private seenVersion: number | undefined;

  constructor(path: string, opts: OpenOptions = {}) {
    this.path = path;
    this.db = openDatabase(path, opts);
    this.insEvent = this.db.prepare<EventInsert>(
      'INSERT INTO events (position, stream, version, type, schema_version, event_id, recorded_at, time, data, hash, origin, line) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
    );
    this.hasId = this.db.prepare<[id: string], number>("SELECT position FROM events WHERE event_id = ? AND event_id <> ''").pluck();
    this.hasLine = this.db
      .prepare<[origin: number, line: number], number>("SELECT position FROM events WHERE origin = ? AND line = ? AND event_id = ''")
      .pluck();
    this.maxLine = this.db.prepare<[origin: number], number | null>('SELECT max(line) FROM events WHERE origin = ?').pluck().safeIntegers(false);
    this.originsOfKey = this.db
      .prepare<[key: string], number>('SELECT id FROM origins WHERE substr(digest, 1, 24) = ? ORDER BY id')
      .pluck()
      .safeIntegers(false);
    this.storedIdWithKey = this.db
      .prepare<[from: string, to: string], number>(
        "SELECT 1 FROM events WHERE event_id <> '' AND event_id >= ? AND event_id < ? AND substr(event_id, 26) NOT GLOB '*[^0-9]*' LIMIT 1",
      )
      .pluck();
    this.insOrigin = this.db.prepare<[digest: string, name: string]>('INSERT INTO origins (digest, name) VALUES (?, ?) ON CONFLICT DO NOTHING');
    this.originIdOf = this.db
      .prepare<[digest: string, name: string], number>('SELECT id FROM origins WHERE digest = ? AND name = ?')
      .pluck()
      .safeIntegers(false);
    this.headStmt = this.db.prepare<[], { position: number; hash: Buffer }>('SELECT position, hash FROM events ORDER BY position DESC LIMIT 1');
    this.dataVersion = this.db.prepare<[], number>('PRAGMA data_version').pluck().safeIntegers(false);
    this.txn = this.db.transaction((fn: () => unknown, onMoved?: () => void, onOther?: () => void) => {
      this.lookAgain(onMoved, onOther);
      this.txnStart = this.headPos;
      return fn();
    });
    this.refreshHead();
  }

  close(): void {
    this.db.close();
  }

  /** Re-reads the last position and hash; true when another writer moved them. */
  refreshHead(): boolean {
    const row = this.headStmt.get();
    const pos = row?.position ?? 0;
    const moved = pos !== this.headPos;
    this.headPos = pos;
    this.headHash = row ? row.hash.toString('hex') : GENESIS;
    return moved;
  }

  get lastPosition(): number {
    return this.headPos;
  }

  /** The position of an event with this id, if one is stored (stored as given, or made again from its line: compact.ts). */
  positionOf(id: string): number | undefined {
    const imported = importedIdParts(id);
    if (imported === undefined) return this.hasId.get(id);
    let stored = this.keyHasStoredIds.get(imported.key);
    if (stored === undefined) this.keyHasStoredIds.set(imported.key, (stored = this.storedIdWithKey.get(`${imported.key}:`, `${imported.key};`) !== undefined));
    if (stored) {
      const given = this.hasId.get(id);
      if (given !== undefined) return given;
    }
    for (const origin of this.originsOf(imported.key)) {
      // Past the last line stored from this file, none is: no look-up (a first import asks for every line).
      if (imported.line > this.lastLineOf(origin)) continue;
      const p = this.hasLine.get(origin, imported.line);
      if (p !== undefined) return p;
    }
    return undefined;
  }

  /** The largest line stored from an `origins` row (0 when none), read once, then kept as this store appends. */
  private lastLineOf(origin: number): number {
    let max = this.lineMax.get(origin);
    if (max === undefined) this.lineMax.set(origin, (max = this.maxLine.get(origin) ?? 0));
    return max;
  }

  /** The `origins` rows of the files whose key (first 24 hex digits of the digest) is this. */
  private originsOf(key: string): number[] {
    let ids = this.keyOrigins.get(key);
    if (ids === undefined) this.keyOrigins.set(key, (ids = this.originsOfKey.all(key)));
    return ids;
  }

  /**
   * At the start of a write transaction (the write lock held): when another connection has
   * committed since this one last wrote, forgets what was looked up of the file, reads the head
   * again and tells `onOther`, and `onMoved` if the head moved (another writer appended).
   */
  private lookAgain(onMoved?: () => void, onOther?: () => void): void {
    const v = this.dataVersion.get()!;
    if (v === this.seenVersion) return;
    this.seenVersion = v;
    this.forgetOrigins();
    onOther?.();
    if (this.refreshHead()) onMoved?.();
  }

  /** Forgets the `origins` rows looked up (a transaction starts or failed). */
  private forgetOrigins(): void {
    this.origins.clear();
    this.keyOrigins.clear();
    this.keyHasStoredIds.clear();
    this.lineMax.clear();
  }

  /** True when the file holds no event now: read afresh, other processes' commits included. */
  isEmpty(): boolean {
    return this.db.prepare('SELECT 1 FROM events LIMIT 1').get() === undefined;
  }

  /**
   * Runs fn in a write transaction (BEGIN IMMEDIATE: one writer at a time, across processes).
   * `onOther` is told, before fn runs, when another connection has committed since this store
   * last wrote (what the caller read of the file may be stale), and `onMoved` when it appended.
   */
  write<T>(fn: () => T, onMoved?: () => void, onOther?: () => void): T {
    const before = { pos: this.headPos, hash: this.headHash };
    try {
      const out = this.txn.immediate(fn, onMoved, onOther) as T;
      this.committed += this.headPos - this.txnStart;
      return out;
    } catch (e) {
      this.afterFailedWrite(e, before);
      throw e;
    }
  }

  /**
   * After a transaction failed (and SQLite rolled it back): the head as committed, and where the
   * fault happened noted for io-errors.ts (a full disk: how much of an import was committed).
   * A fault that also fails the re-read (an I/O error) leaves the head as it was before.
   */
  private afterFailedWrite(e: unknown, before: { pos: number; hash: string }): void {
    this.forgetOrigins();
    this.seenVersion = undefined;
    this.headPos = before.pos;
    this.headHash = before.hash;
    try {
      this.refreshHead();
    } catch {
      // the original error is the one to report
    }
    noteFault(e, { path: this.path, committed: this.committed, head: this.headPos });
  }

  /**
   * write() for a producer that awaits between events (reading a file): an explicit
   * BEGIN IMMEDIATE ... COMMIT around fn; any error rolls everything back.
   */
  async writeAsync<T>(fn: () => Promise<T>, onMoved?: () => void, onOther?: () => void): Promise<T> {
    const before = { pos: this.headPos, hash: this.headHash };
    try {
      this.db.exec('BEGIN IMMEDIATE');
    } catch (e) {
      this.afterFailedWrite(e, before);
      throw e;
    }
    try {
      this.lookAgain(onMoved, onOther);
      const start = this.headPos;
      const out = await fn();
      this.db.exec('COMMIT');
      this.committed += this.headPos - start;
      return out;
    } catch (e) {
      try {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
      } catch {
        // SQLite rolls back by itself after the faults that fail a ROLLBACK (I/O errors)
      }
      this.afterFailedWrite(e, before);
      throw e;
    }
  }

  /**
   * Appends one event at the next position (inside write()). `from`, when given, is the event's
   * origin: the data's last member, not in `data` (which is the rest, as JSON text); an imported
   * line's origin is then stored as integers (compact.ts).
   */
  append(e: Omit<RawEvent, 'position' | 'schemaVersion'> & { schemaVersion?: number; from?: Readonly<Record<string, unknown>> }, streamId: number): number {
    const position = this.headPos + 1;
    const schemaVersion = e.schemaVersion ?? 1;
    const row = compactRow(e);
    const h = chainHash(
      this.headHash,
      envelope({
        position,
        stream: e.stream,
        version: e.version,
        type: e.type,
        schemaVersion,
        id: e.id,
        recordedAt: e.recordedAt,
        time: e.time,
        data: row.hashed,
      }),
    );
    const o = row.origin;
    // A line id stored as given, under a key already asked about: the key has one now.
    if (row.id !== '' && this.keyHasStoredIds.size > 0) {
      const line = importedIdParts(row.id);
      if (line !== undefined && this.keyHasStoredIds.get(line.key) === false) this.keyHasStoredIds.set(line.key, true);
    }
    const origin = o === null ? null : this.originId(o);
    this.insEvent.run(
      position,
      streamId,
      e.version,
      e.type,
      schemaVersion,
      row.id,
      e.recordedAt,
      e.time,
      row.data,
      Buffer.from(h, 'hex'),
      origin,
      o === null ? null : o.line,
    );
    if (origin !== null) {
      const max = this.lineMax.get(origin);
      if (max !== undefined && o!.line > max) this.lineMax.set(origin, o!.line);
    }
    this.headPos = position;
    this.headHash = h;
    return position;
  }

  /** The `origins` row of an imported file (made when first used). */
  private originId(o: OriginParts): number {
    let byName = this.origins.get(o.digest);
    if (byName === undefined) this.origins.set(o.digest, (byName = new Map()));
    let id = byName.get(o.source);
    if (id === undefined) {
      this.insOrigin.run(o.digest, o.source);
      id = this.originIdOf.get(o.digest, o.source)!;
      byName.set(o.source, id);
      const ofKey = this.originsOf(o.digest.slice(0, 24));
      if (!ofKey.includes(id)) ofKey.push(id);
    }
    return id;
  }

  /**
   * Events in position order, streaming in pages (never all in memory, and the connection stays
   * free between pages, so a caller may write while it reads). Each is checked as it is read: its
   * type and data against the schema of stored events (schema.ts), its domain name, id and time
   * against what a command may carry; one that does not fit stops the reading with a
   * CorruptEventError naming it (position and id), as does an event whose domain is missing.
   */
  *read(from = 1, to = Number.MAX_SAFE_INTEGER, pageSize = 8192): IterableIterator<RawEvent> {
    for (const [ev, data] of this.readChecked(from, to, pageSize)) {
      ev.data = typeof data === 'string' ? data : JSON.stringify(data);
      yield ev;
    }
  }

  /** Events in position order, read and checked as `read()` does, decoded (decode.ts: a typed body, addresses as bigint). */
  *events(from = 1, to = Number.MAX_SAFE_INTEGER, pageSize = 8192): IterableIterator<DecodedEvent> {
    for (const [ev, , checked] of this.readChecked(from, to, pageSize)) yield decodeChecked(ev, checked);
  }

  /** The rows of read(), each with its (upcast) data and that data parsed and checked. */
  private *readChecked(from: number, to: number, pageSize: number): IterableIterator<[RawEvent, string | Record<string, unknown>, DecodedData]> {
    const stmt = this.db.prepare<[from: number, to: number, limit: number], RawEvent & { stream: string | null; streamId: number }>(
      `SELECT e.position, e.stream_name AS stream, e.stream AS streamId, e.version, e.type, e.schema_version AS schemaVersion, e.event_id AS id,
              e.recorded_at AS recordedAt, e.time, e.data
         FROM stored_events e
        WHERE e.position >= ? AND e.position <= ? ORDER BY e.position LIMIT ?`,
    );
    let next = from;
    for (;;) {
      const rows = stmt.all(next, to, pageSize);
      for (const row of rows) {
        const what = () => eventName(row.position, row.id);
        if (row.stream === null) throw unfitEvent(what(), `its domain (stream ${row.streamId}) is missing from the streams table`);
        if ((row.data as string | null) === null) throw unfitEvent(what(), 'its origin (the imported file it names) is missing from the origins table');
        const bad = envelopeProblem(row);
        if (bad !== undefined) throw unfitEvent(what(), bad);
        const data = row.schemaVersion === 1 ? row.data : this.upcastOf(row.type, row.schemaVersion, row.data, what);
        const checked = decodeStoredEvent(row.type, data, what);
        const { streamId: _, ...ev } = row;
        yield [ev as RawEvent, data, checked];
      }
      if (rows.length < pageSize) return;
      next = rows[rows.length - 1]!.position + 1;
    }
  }

  /** An event stored at an older schema version, brought to the current one (an unknown version is the event's fault). */
  private upcastOf(type: string, version: number, data: string, what: () => string): Record<string, unknown> {
    const parsed = parseStored<Record<string, unknown>>(what(), data);
    try {
      return upcast(type, version, parsed);
    } catch (e) {
      throw unfitEvent(what(), `schema_version ${version}: ${(e as Error).message}`);
    }
  }

  /** `event #N (id X)`, read when an event must be named (the fold does not read ids). */
  describe(position: number): string {
    const id = this.db.prepare<[position: number], string>('SELECT event_id FROM stored_events WHERE position = ?').pluck().safeIntegers(false).get(position);
    return eventName(position, id);
  }

  /**
   * Events in position order for a fold over the whole log (rebuild): position, stream name,
   * stream version, type and data (upcast to the current schema, decoded and checked against the
   * schema of stored events), as arrays, read a page of 1024 at a time with stream names from a
   * map: cheaper per row than `read()`. An event that does not fit stops the fold with a
   * CorruptEventError naming it. With a `walk`, the rows are also checked against the hash chain
   * as `verify` checks them, in the same read (rebuild: one pass over the log instead of two); at
   * the first break the walk is told (`ChainWalk.broke`, which may throw to stop the fold) and
   * the rows after it are no longer checked. `from`: the first position read (a catch-up of the
   * projections reads the events after their checkpoint; a walk starts at the first event).
   * `foldAt` says the position of the row being read or folded.
   */
  *readForFold(walk?: ChainWalk, from = 1): IterableIterator<[number, string, number, EventType, DecodedData]> {
    this.foldAt = 0;
    const page = 1024;
    const stmt = this.db
      .prepare<
        [after: number | bigint],
        [position: number, stream: number, version: number, type: EventType, schemaVersion: number, data: string, ...chain: unknown[]]
      >(
        `SELECT e.position, e.stream, e.version, e.type, e.schema_version, e.data${walk ? `, ${CHAIN_COLUMNS}` : ''}
           FROM stored_events e WHERE e.position > ? ORDER BY e.position LIMIT ${page}`,
      )
      .raw(true)
      .safeIntegers(false);
    const nameStmt = this.db.prepare<[], [id: number, name: string]>('SELECT id, name FROM streams').raw(true).safeIntegers(false);
    let names = new Map(nameStmt.all());
    let checking = walk !== undefined;
    // From the start: every row, whatever its position (a walk names one stored below 1).
    let after: number | bigint = from <= 1 ? -(1n << 63n) : from - 1;
    for (;;) {
      const rows = stmt.all(after);
      for (const r of rows) {
        this.foldAt = r[0];
        if (checking) {
          // The chain first, as verify would see it: a changed row is a broken chain before it is a bad event.
          const bad = checkLink(this.db, walk!, r[0], r[6] as string | null, r[7] as string | null, r[8] as string | null, r[9] as string);
          if (bad) {
            checking = false;
            walk!.broke(bad);
          }
        }
        const what = () => this.describe(r[0]);
        let name = names.get(r[1]);
        if (name === undefined) {
          names = new Map(nameStmt.all());
          name = names.get(r[1]);
          if (name === undefined) throw unfitEvent(what(), `its domain (stream ${r[1]}) is missing from the streams table`);
        }
        if ((r[5] as string | null) === null) throw unfitEvent(what(), 'its origin (the imported file it names) is missing from the origins table');
        const data = r[4] === 1 ? r[5] : this.upcastOf(r[3], r[4], r[5], what);
        yield [r[0], name, r[2], r[3], decodeStoredEvent(r[3], data, what)];
      }
      if (rows.length < page) return;
      after = rows[rows.length - 1]![0];
    }
  }

  /**
   * Walks the hash chain from the first event (chain.ts `verifyChain`): the first position that
   * does not fit, else intact. A long log is walked in two halves, one on a worker thread
   * (chain-check.ts `verifyInTwo`).
   */
  verify(onProgress?: (done: number) => void): VerifyResult {
    const last = this.headPos;
    return last >= SPLIT_VERIFY_FROM ? verifyInTwo(this.db, this.path, Math.floor(last / 2), onProgress) : verifyChain(this.db, onProgress);
  }

  streams(): StreamRow[] {
    return this.db.prepare<[], StreamRow>('SELECT * FROM streams ORDER BY id').all();
  }
}
