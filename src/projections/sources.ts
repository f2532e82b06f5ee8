/**
 * The `sources` table: one row per imported or applied file that stored at least one event
 * (digest, name, line count, first and last position), how an import knows a file is in the
 * ledger already. Not covered by the hash chain (docs/import.md, "Idempotency"). The one module
 * that reads or writes it (import and apply call these functions).
 */
import type { Ledger, Outcome } from './ledger.js';

/**
 * The events of a source, by their ids (`KEY:…`, KEY the first 24 hex digits of its digest): ids
 * stored as given, and ids the row makes again from its origin and line (events/compact.ts).
 * Two conditions, each served by its own index (an OR of both would read the whole table).
 */
const BY_STORED_ID = "event_id <> '' AND event_id >= @from AND event_id < @to";
const BY_ORIGIN = "origin IN (SELECT id FROM origins WHERE substr(digest, 1, 24) = @key) AND origin IS NOT NULL AND event_id = ''";

/** The smaller of two positions that may be absent. */
const least = (a: number | bigint | null | undefined, b: number | bigint | null | undefined): number | null =>
  a === null || a === undefined
    ? b === null || b === undefined
      ? null
      : Number(b)
    : b === null || b === undefined
      ? Number(a)
      : Math.min(Number(a), Number(b));

/**
 * Counts what a stream of outcomes stored (constant memory: no outcome is kept), and the first
 * and last positions, for the `sources` row.
 */
export class Tally {
  stored = 0;
  duplicates = 0;
  rejected = 0;
  overUnmaps = 0;
  leftMapped = 0;
  divergences = 0;
  first?: number;
  last?: number;

  add(o: Outcome): void {
    if (o.duplicate) {
      this.duplicates++;
      return;
    }
    this.stored++;
    if (o.position !== undefined) {
      this.first ??= o.position;
      this.last = o.position;
    }
    if (!o.ok) this.rejected++;
    if (o.collateral?.length) this.overUnmaps++;
    if (o.leftMapped?.length) this.leftMapped++;
    if (o.op === 'unmap' && o.unmapped !== undefined && o.predicted !== undefined && o.unmapped !== o.predicted) this.divergences++;
  }
}

/** Notes an input file in `sources` (inside the import's transaction). */
export function recordSource(ledger: Ledger, digest: string, name: string, lineCount: number, t: Tally): void {
  if (t.first === undefined || t.last === undefined) return;
  // A resumed import stored its first lines in an earlier run: the source starts at the first of them.
  const key = digest.slice(0, 24);
  const range = { from: `${key}:`, to: `${key};`, key };
  const earlier = least(
    ledger.db.prepare<[typeof range], number | bigint | null>(`SELECT min(position) FROM events WHERE ${BY_STORED_ID}`).pluck().get(range),
    ledger.db.prepare<[typeof range], number | bigint | null>(`SELECT min(position) FROM events WHERE ${BY_ORIGIN}`).pluck().get(range),
  );
  const first = earlier === null ? t.first : Math.min(t.first, Number(earlier));
  ledger.db
    .prepare<[digest: string, name: string, lines: number, first: number, last: number, importedAt: string]>(
      `INSERT INTO sources (digest, name, lines, first_position, last_position, imported_at) VALUES (?,?,?,?,?,?)
       ON CONFLICT (digest) DO UPDATE SET lines = excluded.lines, last_position = excluded.last_position`,
    )
    .run(digest, name, lineCount, first, t.last, new Date().toISOString());
}

export interface SourceRow {
  name: string;
  imported_at: string;
}

/** The row of a source already imported (by digest or head key), if any. */
export function knownSource(ledger: Ledger, key: string): SourceRow | undefined {
  return ledger.db.prepare<[digest: string], SourceRow>('SELECT name, imported_at FROM sources WHERE digest = ?').get(key);
}

/** Has any event of this source (ids `KEY:…`) been stored? (An interrupted import, or a followed file.) */
export function sourceHasEvents(ledger: Ledger, key: string): boolean {
  const range = { from: `${key}:`, to: `${key};`, key };
  return (
    ledger.db.prepare(`SELECT 1 FROM events WHERE ${BY_STORED_ID} LIMIT 1`).get(range) !== undefined ||
    ledger.db.prepare(`SELECT 1 FROM events WHERE ${BY_ORIGIN} LIMIT 1`).get(range) !== undefined
  );
}

/** The domains a source created (ids `KEY:domain:NAME`), in the order it created them, and where. */
export function domainsCreatedBy(ledger: Ledger, key: string): Array<{ name: string; position: number }> {
  const prefix = `${key}:domain:`;
  const rows = ledger.db
    .prepare<[from: string, to: string], { event_id: string; position: number | bigint }>(
      "SELECT event_id, position FROM events WHERE event_id <> '' AND event_id >= ? AND event_id < ? ORDER BY position",
    )
    .all(prefix, `${key}:domain;`);
  return rows.map((r) => ({ name: r.event_id.slice(prefix.length), position: Number(r.position) }));
}

/** The first position a source stored in a domain, if it stored any there. */
export function firstPositionIn(ledger: Ledger, key: string, domain: string): number | undefined {
  const range = { from: `${key}:`, to: `${key};`, key, domain };
  const inDomain = 'stream = (SELECT id FROM streams WHERE name = @domain)';
  const r = least(
    ledger.db.prepare<[typeof range], number | bigint | null>(`SELECT min(position) FROM events WHERE ${inDomain} AND ${BY_STORED_ID}`).pluck().get(range),
    ledger.db.prepare<[typeof range], number | bigint | null>(`SELECT min(position) FROM events WHERE ${inDomain} AND ${BY_ORIGIN}`).pluck().get(range),
  );
  return r === null ? undefined : r;
}

/**
 * A plain import that finished a followed file: the file as it is now is imported too (its whole
 * digest gets the head key's row), so the next plain import of the same bytes says so.
 */
export function recordWholeFile(ledger: Ledger, digest: string, headKey: string, name: string, lines: number): void {
  ledger.db
    .prepare<[digest: string, name: string, lines: number, importedAt: string, headKey: string]>(
      `INSERT OR IGNORE INTO sources (digest, name, lines, first_position, last_position, imported_at)
       SELECT ?, ?, ?, first_position, last_position, ? FROM sources WHERE digest = ?`,
    )
    .run(digest, name, lines, new Date().toISOString(), headKey);
}
