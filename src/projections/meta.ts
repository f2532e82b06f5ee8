/**
 * The `meta` table (schema 1): keys and values about the ledger file itself, outside the hash
 * chain and the projections. The one module that reads or writes it (the migrations in
 * `migrations/` set the upgrade keys):
 *
 * - `made-by`: `demo` or `migrate`, for a ledger one of them wrote (`demo` starts afresh only over
 *   a ledger it made); `migrated-from` and `migration`: the source and the migration of `migrate`;
 * - `rebuild-needed`: an upgrade added projections that only `rebuild` fills in (schemas 2, 3, 8;
 *   the value says which), so `callers` and `audit` warn;
 * - `run-log-needed`: an upgrade to schema 5 left the run log to `rebuild`; until then `stateAt`
 *   reads the runs table.
 *
 * `rebuild` deletes both upgrade keys.
 */
import Database from 'better-sqlite3';
import type { Ledger } from './ledger.js';

export type MetaKey = 'made-by' | 'migrated-from' | 'migration' | 'rebuild-needed' | 'run-log-needed';

const statements = new WeakMap<Database.Database, Map<string, Database.Statement>>();

/** Statements made once per connection: `runLogComplete` asks on every state read. */
function stmt<P extends unknown[], R = unknown>(db: Database.Database, sql: string): Database.Statement<P, R> {
  let m = statements.get(db);
  if (!m) statements.set(db, (m = new Map()));
  let st = m.get(sql);
  if (!st) m.set(sql, (st = db.prepare(sql)));
  return st as unknown as Database.Statement<P, R>;
}

export function getMeta(db: Database.Database, key: MetaKey): string | undefined {
  return stmt<[key: MetaKey], string>(db, 'SELECT value FROM meta WHERE key = ?').pluck().get(key);
}

/** Sets the keys given, in one statement (the keys are written together or not at all). */
export function setMeta(db: Database.Database, values: Partial<Record<MetaKey, string>>): void {
  const entries = Object.entries(values) as Array<[MetaKey, string]>;
  if (!entries.length) return;
  stmt(db, `INSERT OR REPLACE INTO meta (key, value) VALUES ${entries.map(() => '(?, ?)').join(', ')}`).run(...entries.flat());
}

export function deleteMeta(db: Database.Database, keys: MetaKey[]): void {
  if (!keys.length) return;
  stmt(db, `DELETE FROM meta WHERE key IN (${keys.map(() => '?').join(', ')})`).run(...keys);
}

/**
 * Who made the file at `path` (`made-by`): read-only, without opening it as a ledger (no upgrade,
 * no lock wait); undefined when it says nobody, or is no ledger, or cannot be read.
 */
export function madeBy(path: string): string | undefined {
  try {
    const db = new Database(path, { readonly: true });
    try {
      return getMeta(db, 'made-by');
    } finally {
      db.close();
    }
  } catch {
    return undefined;
  }
}

/** Marks a ledger written by `demo`. */
export function markMadeByDemo(ledger: Ledger): void {
  setMeta(ledger.db, { 'made-by': 'demo' });
}

/** Marks a ledger written by `migrate`: from which ledger, by which migration. */
export function markMigrated(ledger: Ledger, source: string, migration: string): void {
  setMeta(ledger.db, { 'made-by': 'migrate', 'migrated-from': source, migration });
}
