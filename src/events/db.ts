/**
 * Opening a ledger file: SQLite through better-sqlite3, WAL mode, and the schema migrator
 * (ordered files in migrations/, tracked in PRAGMA user_version).
 */
import Database from 'better-sqlite3';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LedgerFault } from '../core/errors.js';
import { busyTimeoutMs } from './busy.js';
import { cannotOpen, describeFault, faultKind, noteFault, notAFile, reasonOf, testPageLimit } from './io-errors.js';

export type DB = Database.Database;

/** A ledger that cannot be opened as asked (exit code 2). */
export class LedgerOpenError extends LedgerFault {
  readonly exitCode = 2;
  constructor(
    message: string,
    /** Set when a read-only open met a ledger of an older schema (upgrading it takes a read-write open). */
    readonly olderSchema?: { path: string; version: number },
  ) {
    super(message);
    this.name = 'LedgerOpenError';
  }
}

let binding: string | null | undefined;
/**
 * The path of better-sqlite3's compiled addon, given to it directly: its own look-up (the
 * `bindings` package) walks a stack trace and several folders, a tenth of a query command's
 * start-up. Undefined (its own look-up) when the file is not where a normal build puts it.
 */
function nativeBinding(): string | undefined {
  if (binding === undefined) {
    try {
      const p = createRequire(import.meta.url).resolve('better-sqlite3/build/Release/better_sqlite3.node');
      binding = existsSync(p) ? p : null;
    } catch {
      binding = null;
    }
  }
  return binding ?? undefined;
}

function migrationsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'migrations');
    if (existsSync(join(candidate, '001_init.sql'))) return candidate;
    dir = dirname(dir);
  }
  throw new LedgerOpenError('cannot find the migrations/ folder of iommu-ledger (is the package complete?)');
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

let cached: Migration[] | undefined;

export function migrations(): Migration[] {
  if (cached) return cached;
  const dir = migrationsDir();
  cached = readdirSync(dir)
    .filter((f) => /^\d{3}_.+\.sql$/.test(f))
    .sort()
    .map((f) => ({ version: Number(f.slice(0, 3)), name: f, sql: readFileSync(join(dir, f), 'utf8') }));
  cached.forEach((m, i) => {
    if (m.version !== i + 1) throw new LedgerOpenError(`migrations/${m.name}: expected number ${String(i + 1).padStart(3, '0')}`);
  });
  return cached;
}

export const SCHEMA_VERSION = (): number => migrations().length;

export interface OpenOptions {
  readonly?: boolean;
  /** Refuse to create a new file (queries on a missing ledger are a mistake). */
  mustExist?: boolean;
  /** synchronous=FULL: each commit survives power loss, not only a crash of the process. */
  durable?: boolean;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** fn, tried again every 10 ms while SQLite answers SQLITE_BUSY, for up to the busy timeout. */
function untilNotBusy<T>(fn: () => T): T {
  const end = Date.now() + busyTimeoutMs();
  for (;;) {
    try {
      return fn();
    } catch (e) {
      if (!(e as { code?: string }).code?.startsWith('SQLITE_BUSY') || Date.now() >= end) throw e;
      Atomics.wait(pause, 0, 0, 10);
    }
  }
}

const emptyFile = (path: string) => new LedgerOpenError(`${path} is empty, not a ledger (create one with 'iommu-ledger import' or 'iommu-ledger apply')`);

/**
 * A new file this process created but could not set up (the disk filled during the migrations):
 * removed, with what SQLite left beside it, unless another connection has it open (its -wal is
 * there) or it holds the whole schema (another process set it up meanwhile, and may have stored
 * into it). With no -wal, the header's user_version is the schema version committed.
 */
function removeUnfinished(path: string): void {
  try {
    if (existsSync(`${path}-wal`) || !existsSync(path)) return;
    const head = readFileSync(path).subarray(0, 100);
    const version = head.length === 100 ? head.readUInt32BE(60) : 0;
    if (version >= migrations().length) return;
    for (const suffix of ['', '-shm', '-journal']) rmSync(path + suffix, { force: true });
  } catch {
    // left as it is: the fault being reported matters more
  }
}

/** Opens (creating and migrating when needed) a ledger file. */
export function openDatabase(path: string, opts: OpenOptions = {}): DB {
  if ((opts.mustExist || opts.readonly) && path !== ':memory:' && !existsSync(path)) {
    throw new LedgerOpenError(`no ledger at ${path} (create one with 'iommu-ledger import' or 'iommu-ledger apply', or pass --db)`);
  }
  // A device, a folder or a pipe is no ledger: SQLite would write beside it (--db /dev/null made
  // /dev/null-journal) and fail with an I/O error.
  const what = path !== ':memory:' && existsSync(path) ? notAFile(statSync(path)) : undefined;
  if (what) throw new LedgerOpenError(`${path} is ${what}, not a ledger file: give the path of a ledger file (import and apply create one)`);
  // Checked before SQLite opens it: setting WAL mode would write a header into the empty file.
  if (opts.mustExist && path !== ':memory:' && statSync(path).size === 0) throw emptyFile(path);
  const created = path !== ':memory:' && !existsSync(path);
  let db: DB;
  try {
    const native = nativeBinding();
    db = new Database(path, { readonly: opts.readonly ?? false, fileMustExist: opts.mustExist ?? false, ...(native ? { nativeBinding: native } : {}) });
  } catch (e) {
    throw new LedgerOpenError(`cannot open ${path}: ${(e as Error).message}`);
  }
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs()}`);
    // 16 MiB of page cache. 64 MiB (before schema 9) cost 50-80 MB of peak RSS on imports for no
    // speed measured: `bench:import` 1M lines 251-284 MB against 313-333 MB, 22,116 against 21,168
    // lines/s; bench:ledger 500k the same rates (docs/architecture.md, "Import memory").
    db.pragma('cache_size = -16384');
    db.pragma('temp_store = MEMORY');
    if (!opts.readonly) testPageLimit(db); // tests only: SQLITE_FULL past N pages (io-errors.ts)
    if (!opts.readonly) {
      // Another program's SQLite file is refused before anything is written to it: the switch to
      // WAL below would rewrite its header and change how that program opens it. (A ledger being
      // created by another process shows version 0 and no tables, or its first schema: 001 and
      // its user_version commit together.)
      untilNotBusy(() => {
        if ((db.pragma('user_version', { simple: true }) as number) !== 0) return;
        const n = db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table'").pluck().get() as number;
        if (n > 0)
          throw new LedgerOpenError(
            `${path} is an SQLite file but not an iommu-ledger ledger (it has ${n} table(s) and no ledger schema): it was left unchanged; give --db a ledger file, or a new path`,
          );
      });
      // Switching to WAL is refused at once, without the busy handler, while another process's
      // last connection to the file is closing (checkpointing and removing its -wal): retried.
      untilNotBusy(() => db.pragma('journal_mode = WAL'));
      db.pragma(`synchronous = ${opts.durable ? 'FULL' : 'NORMAL'}`);
    }
    const all = migrations();
    const version = () => db.pragma('user_version', { simple: true }) as number;
    // What is found at `have`, checked before and again under the write lock (another process may
    // be creating or upgrading the same file at the same moment).
    const check = (have: number) => {
      if (have > all.length) {
        throw new LedgerOpenError(
          `${path} was written by a newer iommu-ledger (schema ${have}; this version knows up to ${all.length}): upgrade iommu-ledger to open it`,
        );
      }
      if (have === 0 && !opts.readonly) {
        // A new file, or some other SQLite file: refuse to write into a foreign database.
        const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number };
        if (tables.n > 0) throw new LedgerOpenError(`${path} is an SQLite file but not an iommu-ledger ledger`);
        // An empty file where a ledger must already be (a query): not made into an empty ledger.
        if (opts.mustExist) throw emptyFile(path);
      }
    };
    const have = untilNotBusy(version);
    // Outside the lock only a newer schema is certain: a version 0 read here may be a file another
    // process is creating right now, and is checked again under the lock below.
    if (have > 0) check(have);
    if (have < all.length) {
      if (opts.readonly)
        throw new LedgerOpenError(`${path} has schema ${have}; open it once read-write to upgrade it to ${all.length}`, { path, version: have });
      // One migration per transaction, each chosen under the write lock from the version then
      // stored: two processes creating the same new file do not both run 001 (and the second
      // does not take the first's tables for a foreign database).
      for (;;) {
        const done = db
          .transaction(() => {
            const now = version();
            check(now);
            const m = all[now];
            if (!m) return true;
            db.exec(m.sql);
            db.pragma(`user_version = ${m.version}`);
            return false;
          })
          .immediate();
        if (done) break;
      }
    }
  } catch (e) {
    db.close();
    if (created) removeUnfinished(path);
    // Files that cannot be used as given (exit 2) are refused here; a full disk, an I/O error or
    // a damaged file go up with their path, and io-errors.ts says what they mean.
    const kind = faultKind(e, path);
    if (kind === 'not-sqlite') throw new LedgerOpenError(describeFault(e, { db: path })!.message);
    if (kind === 'cantopen' || kind === 'readonly') throw new LedgerOpenError(cannotOpen(path, reasonOf(e)));
    noteFault(e, { path });
    throw e;
  }
  return db;
}
