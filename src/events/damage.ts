/**
 * A damaged ledger file (cut short, a page overwritten, a bad sector): what `verify` can still
 * read of it, and where the damage starts. docs/architecture.md#io-faults-and-damaged-files.
 *
 * The file is opened read-only, with `writable_schema` on so that SQLite reads a file shorter
 * than its header says (it refuses one otherwise, "database disk image is malformed", before any
 * table is read); a read-only connection still writes nothing. Then:
 * - the events, from position 1, a page at a time, each checked against the hash chain as
 *   `verify` does, up to the first that cannot be read; from there one position at a time up to
 *   the end of the log (its largest position, or as far as the `checkpoints` and `streams`
 *   tables say it goes), to find the later events that can still be read, in runs;
 * - every table, with SQLite's `PRAGMA quick_check` (the pages of each B-tree, the free list),
 *   table by table when the whole-file check itself stops on a damaged page.
 */
import Database from 'better-sqlite3';
import { chainHash, envelope, GENESIS } from './chain.js';
import type { EventStore } from './store.js';
import { LedgerDamagedError, reasonOf } from './io-errors.js';

/** A table or index found damaged, and the first problem SQLite reports in it. */
export interface DamagedObject {
  name: string;
  /** `events` and `streams` hold the log (the names of the streams are hashed into the chain); the other tables are projections, or bookkeeping. */
  role: 'log' | 'projection' | 'bookkeeping' | 'file';
  problem: string;
}

export interface DamageReport {
  ok: false;
  damaged: true;
  path: string;
  /** Events read in order from position 1 before the first that cannot be read. */
  readable: number;
  /** Their hash chain: intact from the first event, broken (tampered as well as damaged), or not checked (the stream names cannot be read). */
  chain: 'intact' | 'broken' | 'unchecked';
  /** The first position where the chain does not fit, when broken. */
  chainBreak?: number;
  /** The hash of event #readable, when the chain is intact up to it. */
  head?: string;
  /** The first position that cannot be read (none: every event can be read, the damage is elsewhere). */
  firstBad?: number;
  /** SQLite's reason there. */
  error?: string;
  /** The last position of the log, as far as the file tells (undefined: it cannot tell). */
  end?: number;
  /** Events after the first bad one that can still be read, as runs of positions. */
  later: Array<{ from: number; to: number }>;
  laterEvents: number;
  /** Positions after the first bad one that cannot be read. */
  unreadable: number;
  /** The tables and indexes that are damaged. */
  objects: DamagedObject[];
  /** One line: what is damaged, what can be read, what to do. */
  message: string;
  /** The report as printed. */
  lines: string[];
}

const LOG_TABLES = new Set(['events', 'streams']);
const BOOKKEEPING = new Set(['meta', 'sources', 'checkpoints']);

type Row = [number, number, number, string, number, string, string, string | null, string, Buffer];
const COLUMNS = 'position, stream, version, type, schema_version, event_id, recorded_at, time, data, hash';

/** How far past the first bad position to look for readable events when the end of the log is unknown. */
const BLIND_SPAN = 65_536;

/**
 * What can be read of a damaged ledger. Opens its own read-only connection; never writes.
 */
export function damageReport(path: string, reason?: string): DamageReport {
  const report: DamageReport = {
    ok: false,
    damaged: true,
    path,
    readable: 0,
    chain: 'unchecked',
    later: [],
    laterEvents: 0,
    unreadable: 0,
    objects: [],
    message: '',
    lines: [],
  };
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (e) {
    return finish(report, `cannot be opened (${reasonOf(e)})`);
  }
  try {
    try {
      // better-sqlite3 opens in SQLite's defensive mode, which ignores writable_schema.
      db.unsafeMode(true);
      db.pragma('writable_schema = ON');
      db.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
    } catch (e) {
      report.firstBad = 1;
      report.error = reasonOf(e);
      report.objects.push({ name: 'the first page', role: 'file', problem: `${reasonOf(e)}: SQLite's header and the list of tables` });
      return finish(report);
    }
    scanEvents(db, report);
    report.objects.push(...damagedObjects(db));
    if (report.firstBad === undefined && !report.objects.length) report.objects.push(...mismatches(db, reason));
    return finish(report);
  } finally {
    db.close();
  }
}

function scanEvents(db: Database.Database, r: DamageReport): void {
  // The stream names are hashed into the chain: without them it cannot be checked.
  let names: Map<number, string> | undefined;
  try {
    names = new Map(db.prepare('SELECT id, name FROM streams').raw(true).all() as Array<[number, string]>);
  } catch {
    names = undefined;
  }
  let prev = GENESIS;
  let expected = 1;
  /** Checks one row against the chain (the link from the row before); notes the first break. */
  const link = (row: Row): void => {
    const hash = Buffer.isBuffer(row[9]) ? row[9].toString('hex') : String(row[9]);
    if (r.chain !== 'broken' && names) {
      const stream = names.get(row[1]);
      const fits =
        row[0] === expected &&
        stream !== undefined &&
        chainHash(
          prev,
          envelope({
            position: row[0],
            stream,
            version: row[2],
            type: row[3],
            schemaVersion: row[4],
            id: row[5],
            recordedAt: row[6],
            time: row[7],
            data: row[8],
          }),
        ) === hash;
      if (!fits) {
        r.chain = 'broken';
        r.chainBreak = expected;
      }
    }
    prev = hash;
    expected = row[0] + 1;
  };
  let page: Database.Statement;
  let one: Database.Statement;
  // Events as the chain covers them (`stored_events`, schema 9: ids and origins made again); from a
  // file whose view cannot be read, the rows as stored.
  const prepare = (from: string): [Database.Statement, Database.Statement] => [
    db.prepare(`SELECT ${COLUMNS} FROM ${from} WHERE position > ? ORDER BY position LIMIT 256`).raw(true).safeIntegers(false),
    db.prepare(`SELECT ${COLUMNS} FROM ${from} WHERE position = ?`).raw(true).safeIntegers(false),
  ];
  try {
    try {
      [page, one] = prepare('stored_events');
    } catch {
      [page, one] = prepare('events');
    }
  } catch (e) {
    // The events table is not in the schema any more.
    r.firstBad = 1;
    r.error = reasonOf(e);
    return;
  }
  if (names) r.chain = 'intact';
  // In pages while they read; from the first page that fails, one position at a time.
  let after = 0;
  for (;;) {
    let rows: Row[];
    try {
      rows = page.all(after) as Row[];
    } catch {
      break;
    }
    for (const row of rows) {
      link(row);
      r.readable++;
    }
    if (rows.length < 256) {
      if (r.chain === 'intact') r.head = prev;
      return; // every event can be read
    }
    after = rows[rows.length - 1]![0];
  }
  let p = after + 1;
  for (; ; p++) {
    let row: Row | undefined;
    try {
      row = one.get(p) as Row | undefined;
    } catch (e) {
      r.firstBad = p;
      r.error = reasonOf(e);
      break;
    }
    if (row === undefined) {
      // Not stored (removed, or the end): the range read above stopped on a damaged page further on.
      r.firstBad = p;
      r.error = 'not found where the next event should be';
      break;
    }
    link(row);
    r.readable++;
  }
  if (r.chain === 'intact') r.head = prev;
  // How far the log goes, from whatever can still be read of it.
  const ends: number[] = [];
  for (const sql of ['SELECT max(position) FROM events', "SELECT position FROM checkpoints WHERE projection = 'inline'", 'SELECT sum(version) FROM streams']) {
    try {
      const v = db.prepare(sql).pluck().safeIntegers(false).get() as number | null | undefined;
      if (typeof v === 'number' && Number.isSafeInteger(v)) ends.push(v);
    } catch {
      // that part is damaged too
    }
  }
  if (ends.length) r.end = Math.max(...ends);
  const last = r.end ?? r.firstBad! + BLIND_SPAN;
  let run: { from: number; to: number } | undefined;
  let missed = 0;
  for (let q = r.firstBad! + 1; q <= last; q++) {
    let row: Row | undefined;
    try {
      row = one.get(q) as Row | undefined;
    } catch {
      row = undefined;
      r.unreadable++;
    }
    if (row === undefined) {
      run = undefined;
      if (r.end === undefined && ++missed >= BLIND_SPAN) break;
      continue;
    }
    missed = 0;
    if (run) run.to = q;
    else r.later.push((run = { from: q, to: q }));
    r.laterEvents++;
  }
  if (r.error?.startsWith('SQLITE_')) r.unreadable++;
}

/** The tables and indexes SQLite finds damaged. */
function damagedObjects(db: Database.Database): DamagedObject[] {
  const check = (arg?: string): string[] => {
    const rows = db.pragma(arg === undefined ? 'quick_check(100)' : `quick_check(${quote(arg)})`) as Array<{ quick_check: string }>;
    // One message a row, or several in one row, one a line.
    return rows.flatMap((x) => x.quick_check.split('\n')).filter((m) => m !== 'ok' && m !== '' && !m.startsWith('*** in database'));
  };
  let objects: Array<{ type: string; name: string; tbl_name: string; rootpage: number }>;
  try {
    objects = db.prepare('SELECT type, name, tbl_name, rootpage FROM sqlite_schema WHERE rootpage > 0').all() as typeof objects;
  } catch (e) {
    return [{ name: 'the list of tables (sqlite_schema)', role: 'file', problem: reasonOf(e) }];
  }
  const byRoot = new Map(objects.map((o) => [o.rootpage, o]));
  const roleOf = (table: string): DamagedObject['role'] => (LOG_TABLES.has(table) ? 'log' : BOOKKEEPING.has(table) ? 'bookkeeping' : 'projection');
  const out: DamagedObject[] = [];
  const seen = new Set<string>();
  /** "Tree 15 page 6000: …" names the B-tree by its root page. */
  const add = (messages: string[], fallback?: string): void => {
    for (const m of messages) {
      const text = m;
      const tree = /^Tree (\d+) /.exec(text);
      const o = tree ? byRoot.get(Number(tree[1])) : undefined;
      const name = o ? `${o.type} ${o.name}` : (fallback ?? 'the file');
      if (seen.has(name)) continue;
      seen.add(name);
      out.push({ name, role: o ? roleOf(o.tbl_name) : fallback ? roleOf(fallback.replace(/^table /, '')) : 'file', problem: text });
    }
  };
  // The whole file first (every B-tree, the free list); it stops at 100 problems, or at the
  // first page it cannot read, so then table by table, to name each damaged one.
  let whole: string[];
  try {
    whole = check();
    if (!whole.length) return out;
  } catch (e) {
    whole = [reasonOf(e)];
  }
  for (const o of objects) {
    if (o.type !== 'table') continue;
    try {
      add(check(o.name), `table ${o.name}`);
    } catch (e) {
      add([`${reasonOf(e)} (in the table or one of its indexes)`], `table ${o.name}`);
    }
  }
  // Problems outside every table (the free list, pages nothing uses).
  if (!out.length) add(whole);
  return out;
}

/**
 * SQLite said the file is damaged, yet every page reads: what only the full integrity check sees
 * (an index whose entries do not match its table's rows).
 */
function mismatches(db: Database.Database, reason: string | undefined): DamagedObject[] {
  try {
    const rows = db.pragma('integrity_check(20)') as Array<{ integrity_check: string }>;
    const problems = rows.flatMap((x) => x.integrity_check.split('\n')).filter((m) => m !== 'ok' && m !== '' && !m.startsWith('*** in database'));
    if (problems.length) return [{ name: 'an index', role: 'file', problem: problems[0]! }];
  } catch (e) {
    return [{ name: 'the file', role: 'file', problem: reasonOf(e) }];
  }
  return reason ? [{ name: 'the file', role: 'file', problem: `${reason}, though every page reads now` }] : [];
}

const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`;

function range(runs: Array<{ from: number; to: number }>, max = 4): string {
  const shown = runs.slice(0, max).map((x) => (x.from === x.to ? `#${x.from}` : `#${x.from}..#${x.to}`));
  return shown.join(', ') + (runs.length > max ? `, … (${runs.length} runs)` : '');
}

function describe(o: DamagedObject): string {
  const role = o.role === 'log' ? 'the log' : o.role === 'projection' ? 'a projection' : o.role === 'bookkeeping' ? 'bookkeeping' : '';
  return `${o.name}${role ? ` (${role})` : ''}: ${o.problem}`;
}

function finish(r: DamageReport, unopened?: string): DamageReport {
  const restore = "nothing was changed; restore the ledger from a copy (a copy whose 'verify' prints the same head hash holds the same events up to there)";
  if (unopened) {
    r.firstBad = 1;
    r.message = `${r.path} is damaged and ${unopened}; ${restore}`;
    r.lines = [r.message];
    return r;
  }
  const lines: string[] = [`${r.path} is damaged:`];
  const parts: string[] = [];
  const chain =
    r.chain === 'intact'
      ? `their hash chain is intact from the first event${r.head ? ` (head hash ${r.head})` : ''}`
      : r.chain === 'broken'
        ? `their hash chain is broken at position ${r.chainBreak} (changed as well as damaged)`
        : 'their hash chain cannot be checked (the stream names cannot be read)';
  if (r.objects.some((o) => o.name === 'the first page')) {
    parts.push(`its first page (SQLite's header and the list of tables) cannot be read (${r.error}), so no event can be read`);
    lines.push(`  first page: cannot be read (${r.error}); no table, and so no event, can be read`);
  } else if (r.firstBad === undefined) {
    parts.push(`all ${r.readable} events can be read and ${chain}`);
    lines.push(`  events: all ${r.readable} can be read; ${chain}`);
  } else {
    const readable = r.readable ? `events #1..#${r.readable} can be read and ${chain}` : 'no event can be read from the first on';
    parts.push(`${readable}; event #${r.firstBad} cannot be read (${r.error})`);
    lines.push(r.readable ? `  events: #1..#${r.readable} can be read (${r.readable} events); ${chain}` : '  events: none can be read from the first on');
    lines.push(`  first bad position: #${r.firstBad} (${r.error})`);
    const end = r.end !== undefined ? `the log ends at #${r.end}` : `the end of the log cannot be read (looked ${BLIND_SPAN} positions on)`;
    if (r.laterEvents) {
      parts.push(`${r.laterEvents} later event(s) can still be read (${range(r.later)})`);
      lines.push(`  after it: ${r.laterEvents} event(s) can still be read, ${range(r.later, 12)}; ${r.unreadable} position(s) cannot; ${end}`);
    } else {
      lines.push(`  after it: no event can be read; ${end}`);
    }
  }
  const objects = r.objects.filter((o) => o.name !== 'the first page');
  if (objects.length) {
    parts.push(`damaged: ${objects.map((o) => o.name).join(', ')}`);
    lines.push('  damaged tables and indexes:');
    for (const o of objects) lines.push(`    ${describe(o)}`);
  }
  r.message = `${r.path} is damaged: ${parts.join('; ')}; ${restore}`;
  lines.push(`  ${restore}`);
  r.lines = lines;
  return r;
}

/**
 * For `verify` after the hash chain verified: SQLite's check of every page of the file (each
 * B-tree, overflow chains, the free list). Damage outside the events (a projection's page)
 * throws a LedgerDamagedError; the command line then prints damageReport().
 */
export function assertFileIntact(store: EventStore): void {
  const path = store.path;
  const rows = store.db.pragma('quick_check(1)') as Array<{ quick_check: string }>;
  const first = rows[0]?.quick_check ?? 'ok';
  if (first !== 'ok') throw new LedgerDamagedError(path, `${path} is damaged: ${first.replace(/^\*\*\* in database main \*\*\*\n/, '').split('\n')[0]}`);
}
