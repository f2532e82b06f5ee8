import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { SCHEMA_VERSION } from '../../src/events/db.js';
import { Ledger, type LedgerOptions } from '../../src/projections/ledger.js';
import { parseCommand } from '../../src/events/schema.js';
import { Queries } from '../../src/projections/queries.js';
import { decodeRuns, type RunColumns } from '../../src/projections/runlog.js';
import { projectionSnapshot, tempDb } from './helpers.js';

/** The 2011 OMAP case, and a miss that follows its over-unmap. */
const history = [
  { op: 'domain', domain: 'isp', profile: 'omap' },
  { op: 'map', domain: 'isp', iova: '0x60000000', paddr: '0x90000000', size: '1M', caller: 'gst' },
  { op: 'unmap', domain: 'isp', iova: '0x60042000', size: '4K', caller: 'queue0' },
  { op: 'unmap', domain: 'isp', iova: '0x60080000', size: '4K', caller: 'gst' },
];

/** Runs the SQL that undoes later migrations and sets the schema number to `version`. */
function rewind(path: string, version: number, sql: string): void {
  const db = new Database(path);
  db.exec(sql);
  db.pragma(`user_version = ${version}`);
  db.close();
}

/**
 * A run log blob as schema 6 wrote it (tag RUN1): an 8-byte header (tag, count), the 8-byte
 * columns, then shift, level and prot; no caller column and no names.
 */
function encodeRunsV1(c: RunColumns): Buffer {
  const n = c.n;
  const buf = Buffer.alloc(8 + n * (7 * 8 + 3));
  buf.writeUInt32LE(0x52554e31, 0);
  buf.writeUInt32LE(n, 4);
  let o = 8;
  for (const a of [c.id, c.iova, c.paddr, c.count, c.mapPos, c.from, c.to, c.shift, c.level, c.prot]) {
    const bytes = new Uint8Array(a.buffer, a.byteOffset, n * a.BYTES_PER_ELEMENT);
    buf.set(bytes, o);
    o += bytes.length;
  }
  return buf;
}

/** Takes a current ledger back to schema 8: every event stored whole (its id and origin in its row). */
function toSchema8(path: string): void {
  rewind(
    path,
    8,
    `
    DROP TRIGGER events_no_update;
    UPDATE events SET event_id = (SELECT v.event_id FROM stored_events v WHERE v.position = events.position),
                      data = (SELECT v.data FROM stored_events v WHERE v.position = events.position)
     WHERE event_id = '' OR origin IS NOT NULL;
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are immutable: UPDATE is not allowed'); END;
    DROP VIEW stored_events;
    DROP INDEX events_line;
    DROP INDEX events_id;
    ALTER TABLE events DROP COLUMN origin;
    ALTER TABLE events DROP COLUMN line;
    DROP TABLE origins;
    CREATE UNIQUE INDEX events_id ON events(event_id);
  `,
  );
}

/** Takes a current ledger back to schema 7: over-unmaps without a stepped or harmful verdict. */
function toSchema7(path: string): void {
  toSchema8(path);
  rewind(
    path,
    7,
    `
    DROP INDEX unmap_findings_pending;
    ALTER TABLE unmap_findings DROP COLUMN step;
    ALTER TABLE unmap_findings DROP COLUMN step_why;
    ALTER TABLE unmap_findings DROP COLUMN step_pos;
    ALTER TABLE unmap_findings DROP COLUMN step_state;
    ALTER TABLE unmap_findings DROP COLUMN step_others;
  `,
  );
}

/** Takes a current ledger back to schema 6: its run log blobs without callers. */
function toSchema6(path: string): void {
  toSchema7(path);
  const db = new Database(path);
  db.transaction(() => {
    for (const r of db.prepare('SELECT domain, first_pos, births FROM run_log').all() as Array<{ domain: number; first_pos: number; births: Buffer }>) {
      db.prepare('UPDATE run_log SET births = ? WHERE domain = ? AND first_pos = ?').run(encodeRunsV1(decodeRuns(r.births)), r.domain, r.first_pos);
    }
    for (const r of db.prepare('SELECT domain, position, data FROM run_snapshots').all() as Array<{ domain: number; position: number; data: Buffer }>) {
      db.prepare('UPDATE run_snapshots SET data = ? WHERE domain = ? AND position = ?').run(encodeRunsV1(decodeRuns(r.data)), r.domain, r.position);
    }
  })();
  db.pragma('user_version = 6');
  db.close();
}

/** Takes a current ledger back to schema 5: no intent snapshots, and no map event in intent rows. */
function toSchema5(path: string): void {
  toSchema6(path);
  rewind(
    path,
    5,
    `
    DROP TABLE intent_snapshots;
    DROP INDEX intent_ended;
    ALTER TABLE intent DROP COLUMN map_pos;
  `,
  );
}

/** Takes a current ledger back to schema 4: no run log, and the lifetime classes of the old stateAt query. */
function toSchema4(path: string): void {
  toSchema5(path);
  rewind(
    path,
    4,
    `
    DROP TABLE run_log;
    DROP TABLE run_snapshots;
    ALTER TABLE runs ADD COLUMN lifetime_class INTEGER NOT NULL DEFAULT 63;
    CREATE INDEX runs_time ON runs(domain, lifetime_class, valid_from);
  `,
  );
}

/** Takes a current ledger back to what schema 1 had (what version 0.1.0 of the first session wrote). */
function toSchema1(path: string): void {
  toSchema4(path);
  rewind(
    path,
    1,
    `
    DROP TABLE asymmetric_unmaps;
    DROP INDEX unmap_findings_reach;
    DROP INDEX runs_long;
    ALTER TABLE caller_symmetry DROP COLUMN straddles;
    ALTER TABLE caller_symmetry DROP COLUMN unmap_bytes;
    ALTER TABLE caller_symmetry DROP COLUMN cut_bytes;
    DELETE FROM meta WHERE key = 'rebuild-needed';
  `,
  );
}

/** A new ledger file holding `history`. */
function ledgerWithHistory(opts: LedgerOptions = {}): string {
  const path = tempDb();
  const l = new Ledger(path, opts);
  l.appendRaw(history);
  l.close();
  return path;
}

/** Every state of the domain 'isp', at each position. */
const statesOf = (q: Queries) => Array.from({ length: q.lastPosition }, (_, i) => q.stateAt('isp', i + 1).pages);

describe('a ledger written by an older version', () => {
  it('opens read-write, upgrades to the current schema, says a rebuild is needed, and rebuild makes it whole', () => {
    const path = ledgerWithHistory();
    const [want, wantStates] = (() => {
      const q = new Queries(path);
      const c = q.callers();
      const st = statesOf(q);
      q.close();
      return [c, st] as const;
    })();
    expect(wantStates[1]!.length).toBeGreaterThan(0);
    toSchema1(path);

    // A read-only open refuses to upgrade (it would change the file).
    expect(() => new Queries(path, { readonly: true })).toThrow(/has schema 1; open it once read-write to upgrade it to/);

    const q = new Queries(path);
    expect(Number(q.db.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION());
    expect(q.staleProjections()).toBe('schema 2: caller analysis');
    // The events and the schema-1 projections are intact; the new analysis is empty until rebuild.
    expect(q.findings({ kind: 'over-unmap' })).toHaveLength(1);
    expect(q.callers().find((c) => c.caller === 'queue0')!.examples).toEqual([]);
    // Until the rebuild fills the run log in, states come from the runs table: the same.
    expect(statesOf(q)).toEqual(wantStates);
    q.close();

    const r = new Ledger(path);
    expect(r.store.verify().ok).toBe(true);
    r.rebuild();
    r.close();
    const after = new Queries(path);
    expect(after.staleProjections()).toBeUndefined();
    expect(after.callers()).toEqual(want);
    expect(statesOf(after)).toEqual(wantStates);
    expect(after.callers().find((c) => c.caller === 'gst')!.missesAfterOverUnmap).toBe(1);
    after.close();
  });
});

describe('a ledger written at schema 4', () => {
  it('upgrades to schema 5 with its run log marked incomplete (not the caller analysis): states come from the runs table until a rebuild', () => {
    const path = ledgerWithHistory();
    const q0 = new Queries(path);
    const want = statesOf(q0);
    q0.close();
    toSchema4(path);

    const q = new Queries(path);
    // Not for the run log (schema 5); its over-unmap has no stepped/harmful verdict until a rebuild (schema 8).
    expect(q.staleProjections()).toBe('schema 8: stepped and harmful over-unmaps');
    expect(q.db.prepare("SELECT value FROM meta WHERE key = 'run-log-needed'").pluck().get()).toBe('schema 5: the run log behind stateAt');
    expect(statesOf(q)).toEqual(want);
    q.close();
    // Appending before the rebuild: the live state loads from the runs table, and states stay exact.
    const a = new Ledger(path);
    a.appendRaw([{ op: 'map', domain: 'isp', iova: '0x70000000', paddr: '0x91000000', size: '64K', caller: 'gst' }]);
    a.close();
    const q2 = new Queries(path);
    const more = statesOf(q2);
    expect(more.slice(0, want.length)).toEqual(want);
    expect(more[more.length - 1]!.map((p) => p.iova)).toEqual([0x70000000n]);
    q2.close();
    const r = new Ledger(path);
    r.rebuild();
    r.close();
    const q3 = new Queries(path);
    expect(q3.db.prepare("SELECT count(*) FROM meta WHERE key = 'run-log-needed'").pluck().get()).toBe(0n);
    expect(statesOf(q3)).toEqual(more);
    q3.close();
  });
});

describe('a ledger written at schema 5', () => {
  it('upgrades to schema 6: appends load the live intent from its rows until a snapshot is written, then from the snapshot; rebuild gives what a new ledger holds', () => {
    const more = [
      { op: 'map', domain: 'isp', iova: '0x70000000', paddr: '0x91000000', size: '64K', caller: 'gst' },
      { op: 'unmap', domain: 'isp', iova: '0x70001000', size: '4K', caller: 'gst' },
      { op: 'map', domain: 'isp', iova: '0x71000000', paddr: '0x92000000', size: '8K', caller: 'queue0' },
      { op: 'unmap', domain: 'isp', iova: '0x71000000', size: '8K', caller: 'queue0' },
    ];
    const path = ledgerWithHistory({ snapshotEvery: 3 });
    toSchema5(path);
    const live = (db: Database.Database) =>
      (
        db
          .prepare('SELECT caller, iova, iova_last - iova + 1 AS size, id FROM intent WHERE valid_to IS NULL ORDER BY caller, iova')
          .safeIntegers(true)
          .all() as Array<Record<string, bigint | string>>
      ).map((r) => ({ caller: r.caller, row: Number(r.id) }));
    for (const [i, cmd] of more.entries()) {
      const a = new Ledger(path, { snapshotEvery: 3 });
      expect(Number(a.db.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION());
      // The snapshot at version 3 went with the downgrade; version 6 (appended at i = 1) writes the next.
      const snapshots = a.db.prepare('SELECT count(*) FROM intent_snapshots').pluck().get();
      expect(snapshots).toBe(i >= 2 ? 1 : 0);
      expect(a.intentNow('isp').map((x) => ({ caller: x.caller, row: x.row }))).toEqual(live(a.db));
      a.appendRaw([cmd]);
      a.close();
    }
    const r = new Ledger(path, { snapshotEvery: 3 });
    expect(r.rebuild().mismatches).toBe(0);
    const fresh = tempDb();
    const f = new Ledger(fresh, { snapshotEvery: 3 });
    f.appendRaw([...history, ...more]);
    expect(projectionSnapshot(r.db)).toEqual(projectionSnapshot(f.db));
    expect(r.intentNow('isp')).toEqual(f.intentNow('isp'));
    r.close();
    f.close();
  });
});

describe('a ledger written at schema 6', () => {
  it('upgrades to schema 7: states name the callers of runs whose blobs have none from the events, appends write blobs with callers, rebuild rewrites them all', () => {
    const more = [
      { op: 'map', domain: 'isp', iova: '0x70000000', paddr: '0x91000000', size: '64K', caller: 'gst' },
      { op: 'unmap', domain: 'isp', iova: '0x70001000', size: '4K', caller: 'queue0' },
      { op: 'map', domain: 'isp', iova: '0x71000000', paddr: '0x92000000', size: '8K' },
    ];
    const blobsWithCallers = (db: Database.Database) =>
      (db.prepare('SELECT births FROM run_log UNION ALL SELECT data FROM run_snapshots').pluck().all() as Buffer[]).map((b) =>
        decodeRuns(b).caller.every((k) => k > 0),
      );
    const callersAt = (q: Queries) => Array.from({ length: q.lastPosition }, (_, i) => [...q.callersOfRuns(q.stateAt('isp', i + 1).runs)]);
    const fresh = tempDb();
    const f = new Ledger(fresh, { snapshotEvery: 2 });
    f.appendRaw([...history, ...more]);
    // A ledger written now knows the caller of every run from its blobs alone.
    expect(blobsWithCallers(f.db).every(Boolean)).toBe(true);
    f.close();
    const fq = new Queries(fresh);
    const want = callersAt(fq);
    fq.close();
    expect(new Set(want.flat().map(([, c]) => c))).toEqual(new Set(['gst', '(unknown)']));

    const path = ledgerWithHistory({ snapshotEvery: 2 });
    toSchema6(path);
    // Appends, one at a time: the first reopens from a RUN1 snapshot and log.
    for (const cmd of more) {
      const a = new Ledger(path, { snapshotEvery: 2 });
      expect(Number(a.db.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION());
      a.appendRaw([cmd]);
      a.close();
    }
    const q = new Queries(path);
    const blobs = blobsWithCallers(q.db);
    expect(blobs).toContain(false); // the blobs schema 6 wrote
    expect(blobs).toContain(true); // and those written since
    expect(callersAt(q)).toEqual(want);
    q.close();
    const r = new Ledger(path, { snapshotEvery: 2 });
    expect(r.rebuild().mismatches).toBe(0);
    expect(blobsWithCallers(r.db).every(Boolean)).toBe(true);
    r.close();
    const q2 = new Queries(path);
    expect(callersAt(q2)).toEqual(want);
    q2.close();
  });
});

describe('a ledger written at schema 7', () => {
  it('upgrades to schema 8: its over-unmaps have no verdict (counted as harmful) and a rebuild is asked for; rebuild gives the verdicts a new ledger gives', () => {
    const fresh = ledgerWithHistory();
    const fq = new Queries(fresh);
    const want = fq.findings({ kind: 'over-unmap' }).map((f) => [f.position, f.step]);
    fq.close();
    // The OMAP case: queue0 took gst's pages: harmful, another owner.
    expect(want).toEqual([[3, { verdict: 'harmful', reason: 'other-owner', at: 3, others: ['gst'] }]]);

    const path = ledgerWithHistory();
    toSchema7(path);
    const q = new Queries(path);
    expect(Number(q.db.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION());
    expect(q.staleProjections()).toBe('schema 8: stepped and harmful over-unmaps');
    expect(q.findings({ kind: 'over-unmap' }).map((f) => [f.position, f.step])).toEqual([[3, undefined]]);
    expect(q.findings({ kind: 'over-unmap', stepped: false })).toHaveLength(1);
    q.close();
    const r = new Ledger(path);
    expect(r.rebuild().mismatches).toBe(0);
    r.close();
    const q2 = new Queries(path);
    expect(q2.staleProjections()).toBeUndefined();
    expect(q2.findings({ kind: 'over-unmap' }).map((f) => [f.position, f.step])).toEqual(want);
    q2.close();
  });
});

describe('a ledger written at schema 8', () => {
  it('upgrades to schema 9: its events stay whole and verify; its imported lines are still known; new events are stored compact', () => {
    const digest = 'c'.repeat(64);
    const from = (line: number) => ({ source: 'trace.txt', digest, line });
    const map = (i: number) => parseCommand({ op: 'map', domain: 'isp', iova: `0x${(0x10000000 + i * 0x1000).toString(16)}`, paddr: '0x1000', size: '4K' });
    const path = tempDb();
    const l = new Ledger(path);
    l.append([{ cmd: parseCommand({ op: 'domain', domain: 'isp', profile: 'omap' }) }, { cmd: map(1), from: from(1) }, { cmd: map(2), from: from(2) }]);
    const head = l.store.verify().head;
    l.close();
    toSchema8(path);
    const old = new Database(path);
    expect(old.prepare("SELECT count(*) FROM events WHERE event_id = ''").pluck().get()).toBe(0);
    old.close();

    const u = new Ledger(path);
    expect(Number(u.db.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION());
    expect(u.store.verify()).toMatchObject({ ok: true, head });
    // Line 2 is known (its id stored whole at schema 8); line 3 is new and stored compact.
    expect(
      u
        .append([
          { cmd: map(2), from: from(2) },
          { cmd: map(3), from: from(3) },
        ])
        .map((o) => o.duplicate ?? false),
    ).toEqual([true, false]);
    expect(u.store.verify().ok).toBe(true);
    const stored = u.db.prepare('SELECT event_id, origin FROM events ORDER BY position').raw(true).all();
    expect(stored).toEqual([
      ['@isp:1', null],
      [`${digest.slice(0, 24)}:1`, null],
      [`${digest.slice(0, 24)}:2`, null],
      ['', 1],
    ]);
    u.close();
  });
});
