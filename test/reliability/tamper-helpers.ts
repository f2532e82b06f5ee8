/**
 * Tampering with a ledger file behind iommu-ledger's back, as an attacker with write access to
 * the file would: straight SQL through better-sqlite3, and, where a case needs it, the hash chain
 * recomputed after the change (so that `verify` still says intact).
 */
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chainHash, envelope, GENESIS } from '../../src/events/chain.js';
import { cli, EX } from '../cli/helpers.js';
import { tempDb } from '../ledger/helpers.js';

/** Runs SQL on the file with the triggers that keep events immutable dropped. */
export function rawSql(db: string, sql: string, ...params: unknown[]): void {
  const raw = new Database(db);
  raw.exec('DROP TRIGGER IF EXISTS events_no_update; DROP TRIGGER IF EXISTS events_no_delete');
  raw.prepare(sql).run(...params);
  raw.close();
}

/** Runs fn on a raw connection to the file (no triggers dropped). */
export function withRaw<T>(db: string, fn: (raw: Database.Database) => T): T {
  const raw = new Database(db);
  try {
    return fn(raw);
  } finally {
    raw.close();
  }
}

/**
 * Recomputes the hash of every event from `from` on, exactly as `append` computes it (the
 * envelope of its fields, chained on the previous hash): after this, `verify` says intact.
 */
export function rechain(db: string, from = 1): void {
  withRaw(db, (raw) => {
    raw.exec('DROP TRIGGER IF EXISTS events_no_update');
    let prev = from > 1 ? (raw.prepare('SELECT hash FROM events WHERE position = ?').get(from - 1) as { hash: Buffer }).hash.toString('hex') : GENESIS;
    const rows = raw
      .prepare(
        `SELECT e.position, e.stream_name AS stream, e.version, e.type, e.schema_version AS schemaVersion, e.event_id AS id, e.recorded_at AS recordedAt, e.time, e.data
           FROM stored_events e WHERE e.stream_name IS NOT NULL AND e.position >= ? ORDER BY e.position`,
      )
      .all(from) as Array<Parameters<typeof envelope>[0]>;
    const up = raw.prepare('UPDATE events SET hash = ? WHERE position = ?');
    for (const r of rows) {
      prev = chainHash(prev, envelope(r));
      up.run(Buffer.from(prev, 'hex'), r.position);
    }
  });
}

/** Sets an event's stored data (and, when given, its type), then recomputes the chain from it. */
export function rewriteEvent(db: string, position: number, change: { data?: string; type?: string }, opts: { rechain?: boolean } = {}): void {
  // The row is stored whole from now on: its id and origin no longer made again from other columns (events/compact.ts).
  if (change.data !== undefined)
    rawSql(
      db,
      'UPDATE events SET data = ?, event_id = (SELECT event_id FROM stored_events WHERE position = ?), origin = NULL, line = NULL WHERE position = ?',
      change.data,
      position,
      position,
    );
  if (change.type !== undefined) rawSql(db, 'UPDATE events SET type = ? WHERE position = ?', change.type, position);
  if (opts.rechain ?? true) rechain(db, position);
}

/**
 * Breaks the hash chain at an event that still fits: another caller named in its data, the hash
 * left as it was (a fold goes on past it; verify and rebuild stop there).
 */
export function breakChainAt(db: string, position: number): void {
  const data = JSON.parse(eventData(db, position).data) as object;
  rewriteEvent(db, position, { data: JSON.stringify({ ...data, who: { caller: 'tampered' } }) }, { rechain: false });
}

/** The stored data of an event. */
export function eventData(db: string, position: number): { type: string; id: string; data: string } {
  return withRaw(
    db,
    (raw) => raw.prepare('SELECT type, event_id AS id, data FROM stored_events WHERE position = ?').get(position) as { type: string; id: string; data: string },
  );
}

let scenario: string | undefined;
/**
 * A copy of a ledger of examples/scenario.jsonl (17 events: gpu0 at 1–10, dsp at 11–17; event 6
 * is kvm's over-unmap of 0x201000+4K, event 7 a fault), in a new folder; checkpointed into one
 * file, so a plain file copy carries it.
 */
export async function scenarioCopy(): Promise<string> {
  if (!scenario || !existsSync(scenario)) {
    const db = tempDb('scenario.db');
    const r = await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    if (r.code !== 0) throw new Error(`apply failed: ${r.err}`);
    withRaw(db, (raw) => raw.pragma('wal_checkpoint(TRUNCATE)'));
    scenario = db;
  }
  const copy = tempDb();
  copyFileSync(scenario, copy);
  return copy;
}

/** Every row of every table of the file (events and projections), for "nothing changed" checks. */
export function fileSnapshot(db: string): Record<string, unknown[]> {
  return withRaw(db, (raw) => {
    const tables = (raw.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[]).filter(
      (t) => !t.startsWith('sqlite_'),
    );
    const out: Record<string, unknown[]> = {};
    for (const t of tables) {
      out[t] = raw
        .prepare(`SELECT * FROM "${t}"`)
        .safeIntegers(true)
        .all()
        .map((r) => JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(v) ? v.toString('hex') : v)))
        .sort();
    }
    return out;
  });
}

/** The number of events stored. */
export function eventCount(db: string): number {
  return withRaw(db, (raw) => raw.prepare('SELECT count(*) FROM events').pluck().get() as number);
}
