/**
 * The prepared statements of the ledger's write path, typed: each one is declared with the tuple
 * of what it binds and the row it returns (after its `pluck`/`raw`/`safeIntegers` settings), so a
 * call site that binds the wrong parameters or reads a column that is not there fails to compile.
 * `prepareLedgerStatements` prepares them all on one database; `Ledger` does it when it opens,
 * and again after `rebuild` has recreated the projection tables.
 */
import type Database from 'better-sqlite3';
import { missingProjection, missingProjectionError } from './corrupt.js';

/**
 * A prepared statement with the tuple it binds (`P`) and the row it returns (`R`): the part of
 * better-sqlite3's `Statement` the write path uses.
 */
export interface Statement<P extends unknown[], R = unknown> {
  run(...params: P): Database.RunResult;
  get(...params: P): R | undefined;
  all(...params: P): R[];
  pluck(on?: boolean): this;
  raw(on?: boolean): this;
  safeIntegers(on?: boolean): this;
}

/** A stored event row as the write path reads it (its data still JSON text). */
export interface EventRow {
  position: number;
  event_id: string;
  type: string;
  data: string;
}

/** A `streams` row (safe integers: every integer column is a bigint). */
export interface StreamRow {
  id: bigint;
  version: bigint;
  profile: string;
  destroyed_at: bigint | null;
  max_span: bigint;
  invalidations: bigint;
  invalidated_bytes: bigint;
}

/** Biased 64-bit values (codec.ts toDb) are bound as bigints; NULL as null. */
export type U64 = bigint;

/** The `(id, caller, iova, iova_last, map_pos)` of a live intent row, raw and with safe integers. */
export type IntentRowRaw = [id: bigint, caller: string, iova: bigint, iovaLast: bigint, mapPos: bigint];

/**
 * Prepares every statement of the write path on `db`. A statement on a projection table that is
 * missing (dropped outside iommu-ledger) fails only when it is used, saying so (CorruptProjectionError
 * naming `path`): `verify` and `rebuild` need none of them.
 */
export function prepareLedgerStatements(db: Database.Database, path: string) {
  const p = statementPreparer(db, path);
  return {
    insStream: p<[name: string, profile: string, createdAt: number]>('INSERT INTO streams (name, version, profile, created_at) VALUES (?, 0, ?, ?)'),
    setVersion: p<[version: number, maxSpan: U64, invalidations: number, invalidatedBytes: U64, id: number]>(
      'UPDATE streams SET version = ?, max_span = ?, invalidations = ?, invalidated_bytes = ? WHERE id = ?',
    ),
    setDestroyed: p<[destroyedAt: number, version: number, id: number]>('UPDATE streams SET destroyed_at = ?, version = ? WHERE id = ?'),
    stream: p<[name: string], StreamRow>(
      'SELECT id, version, profile, destroyed_at, max_span, invalidations, invalidated_bytes FROM streams WHERE name = ?',
    ).safeIntegers(true),
    // The largest runs row id: the next run born gets the next (the runs projection writes it, runs.ts).
    maxRunId: p<[], number | null>('SELECT max(id) FROM runs').safeIntegers(false).pluck(),
    // The largest intent row id: the next row born gets the next (the intent projection writes it, intent.ts).
    maxIntentId: p<[], number | null>('SELECT max(id) FROM intent').safeIntegers(false).pluck(),
    intentSnap: p<[domain: number], { position: number; max_id: number; callers: string; data: Buffer }>(
      'SELECT position, max_id, callers, data FROM intent_snapshots WHERE domain = ?',
    ).safeIntegers(false),
    // Rows ended after a snapshot, through the partial index of ended rows (schema 6).
    intentEndedSince: p<[domain: number, since: number], number>(
      'SELECT id FROM intent INDEXED BY intent_ended WHERE domain = ? AND valid_to > ? AND valid_to IS NOT NULL',
    )
      .safeIntegers(false)
      .pluck(),
    // A range of row ids (the domain's index would read every row of the domain).
    intentBornAfter: p<[maxId: number, domain: number], IntentRowRaw>(
      'SELECT id, caller, iova, iova_last, coalesce(map_pos, valid_from) FROM intent WHERE id > ? AND +domain = ? AND valid_to IS NULL ORDER BY id',
    )
      .raw(true)
      .safeIntegers(true),
    // The open over-unmaps of a domain (its stepping tracker's cases), from the findings projection's pending rows (findings.ts).
    pendingSteps: p<[domain: number], { position: number; caller: string; step_state: string }>(
      "SELECT position, caller, step_state FROM unmap_findings INDEXED BY unmap_findings_pending WHERE domain = ? AND step = 'pending' ORDER BY position",
    ).safeIntegers(false),
    // Runs of up to 2 MiB start at most 2 MiB below the IOVA; longer ones come from their own index (schema 4).
    // Removed before event @before: the table goes no further while appending, but a rebuild of
    // other projections (`rebuild`'s `projections`) folds the events again beside a complete table.
    lastRemoval: p<[{ d: number; x: U64; near: U64; before: number }], number | null>(
      `SELECT max(valid_to) FROM runs WHERE domain = @d AND iova <= @x AND iova >= @near AND iova_last >= @x AND valid_to < @before`,
    )
      .safeIntegers(false)
      .pluck(),
    lastRemovalLong: p<[{ d: number; x: U64; far: U64; before: number }], number | null>(
      `SELECT max(valid_to) FROM runs INDEXED BY runs_long
          WHERE domain = @d AND iova <= @x AND iova >= @far AND iova_last >= @x AND iova_last - iova >= 2097152 AND valid_to < @before`,
    )
      .safeIntegers(false)
      .pluck(),
    eventData: p<[position: number], EventRow>('SELECT position, event_id, type, data FROM stored_events WHERE position = ?'),
    createdEvent: p<[stream: number], EventRow>('SELECT position, event_id, type, data FROM stored_events WHERE stream = ? AND version = 1'),
    checkpoint: p<[position: number]>(
      "INSERT INTO checkpoints (projection, position) VALUES ('inline', ?) ON CONFLICT (projection) DO UPDATE SET position = excluded.position",
    ),
    /** The checkpoint written when there is none: before a first transaction that defers its projections. */
    checkpointIfMissing: p<[position: number]>("INSERT INTO checkpoints (projection, position) VALUES ('inline', ?) ON CONFLICT (projection) DO NOTHING"),
    /** The position the projection tables are at (undefined: no row, a ledger with no transaction yet). */
    projectedTo: p<[], number>("SELECT position FROM checkpoints WHERE projection = 'inline'").pluck().safeIntegers(false),
  };
}

/**
 * What prepares one typed statement on `db` (the projection modules of registry.ts prepare theirs
 * with it too): a statement on a projection table that is missing fails only when it is used,
 * naming the table and `path` (CorruptProjectionError).
 */
export function statementPreparer(db: Database.Database, path: string) {
  return <P extends unknown[], R = unknown>(sql: string): Statement<P, R> => {
    try {
      return db.prepare<P, R>(sql);
    } catch (e) {
      const message = (e as Error).message;
      // A statement on the projections alone names any column it misses as theirs.
      const column = /\b(events|streams)\b/.test(sql) ? undefined : /^no such column: (?:\w+\.)?(\w+)/.exec(message)?.[1];
      const missing = missingProjection(message) ?? (column !== undefined ? { kind: 'column' as const, name: column } : undefined);
      if (!missing) throw e;
      return failingStatement<P, R>(missingProjectionError(path, missing));
    }
  };
}

/** The write path's statements, by name. */
export type LedgerStatements = ReturnType<typeof prepareLedgerStatements>;

/** A statement that could not be prepared (its table is missing): every use throws `err`, configuring it does nothing. */
function failingStatement<P extends unknown[], R>(err: Error): Statement<P, R> {
  const fail = (): never => {
    throw err;
  };
  const stub: Record<string, unknown> = { run: fail, get: fail, all: fail, iterate: fail };
  for (const k of ['pluck', 'raw', 'expand', 'safeIntegers', 'bind']) stub[k] = () => stub;
  return stub as unknown as Statement<P, R>;
}
