/**
 * Faults of the disk, the file system and the ledger file itself, as a user sees them: the one
 * place where SQLite's result codes (SQLITE_BUSY, SQLITE_FULL, SQLITE_IOERR*, SQLITE_READONLY*,
 * SQLITE_CANTOPEN*, SQLITE_CORRUPT*, SQLITE_NOTADB) and Node's file errors (ENOSPC, EIO, EROFS,
 * EACCES) become an exit code and a one-line message that says what happened, what is safe, and
 * what to do. docs/architecture.md#io-faults-and-damaged-files.
 *
 * - 75 (temporary: run it again): the ledger was busy; the disk is full; an I/O error.
 * - 2 (the path cannot be used as given): read-only for this user, cannot be opened, not a
 *   ledger file (a device, a folder, some other file).
 * - 1 (the ledger failed a check): the file is damaged; `verify` says what can still be read.
 *
 * SQLite rolls back the transaction a fault interrupts, so no fault here loses or half-writes a
 * committed event; the messages say how much of the command was committed before it.
 *
 * No dependencies beyond Node's own modules (and core/errors.ts): the command line loads this only
 * after a failure.
 */
import { closeSync, openSync, readSync, statfsSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LedgerFault } from '../core/errors.js';
import { busyTimeoutMs } from './busy.js';

export type FaultKind = 'busy' | 'full' | 'io' | 'readonly' | 'cantopen' | 'damaged' | 'not-sqlite';

/** The exit code of each kind of fault. */
export const FAULT_EXIT: Record<FaultKind, 1 | 2 | 75> = {
  busy: 75,
  full: 75,
  io: 75,
  readonly: 2,
  cantopen: 2,
  damaged: 1,
  'not-sqlite': 2,
};

/** SQLite's result code of an error (`SQLITE_FULL`, `SQLITE_IOERR_WRITE`, …), if it is one. */
export function sqliteCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null | undefined)?.code;
  return typeof c === 'string' && c.startsWith('SQLITE_') ? c : undefined;
}

/** Node's error code of a failed file operation (`ENOSPC`, `EACCES`, …), if it is one. */
function systemCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown; syscall?: unknown } | null | undefined)?.code;
  return typeof c === 'string' && /^E[A-Z]+$/.test(c) && typeof (e as { syscall?: unknown }).syscall === 'string' ? c : undefined;
}

/** True for an error SQLite raised: callers that name the input line of a failure let these through. */
export const isSqliteError = (e: unknown): boolean => sqliteCode(e) !== undefined;

/**
 * A ledger file found damaged by iommu-ledger itself (not by an SQLite result code): `verify`'s
 * check of the file's structure (damage.ts) throws it. Exit code 1, as every damaged file; the
 * command line words it with describeFault() like the damage SQLite reports.
 */
export class LedgerDamagedError extends LedgerFault {
  readonly exitCode = 1;
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = 'LedgerDamagedError';
  }
}

/** Where a fault happened, noted by the layer that saw it (the command line knows only --db). */
export interface FaultContext {
  /** The file SQLite was working on (the ledger, or a new ledger: replay's and migrate's --out). */
  path: string;
  /** Events this connection had committed before the fault (earlier transactions of an import). */
  committed?: number;
  /** The last committed position of the ledger after the fault. */
  head?: number;
}

const contexts = new WeakMap<object, FaultContext>();

/** Notes where an error happened, once (the innermost layer that knows wins). */
export function noteFault(e: unknown, ctx: FaultContext): void {
  if (typeof e === 'object' && e !== null && !contexts.has(e)) contexts.set(e, ctx);
}

export function faultContext(e: unknown): FaultContext | undefined {
  return typeof e === 'object' && e !== null ? contexts.get(e) : undefined;
}

/** What kind of fault an error is (undefined: not a storage fault; another layer's error, or a bug). */
export function faultKind(e: unknown, path?: string): FaultKind | undefined {
  if (e instanceof LedgerDamagedError) return 'damaged';
  const code = sqliteCode(e);
  if (code !== undefined) {
    if (code.startsWith('SQLITE_BUSY')) return 'busy';
    if (code === 'SQLITE_FULL') return 'full';
    if (code.startsWith('SQLITE_IOERR')) return 'io';
    if (code.startsWith('SQLITE_READONLY') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH') return 'readonly';
    if (code.startsWith('SQLITE_CANTOPEN')) return 'cantopen';
    if (code.startsWith('SQLITE_CORRUPT')) return 'damaged';
    if (code === 'SQLITE_NOTADB') return path !== undefined && looksLikeDamagedLedger(path) ? 'damaged' : 'not-sqlite';
    return undefined;
  }
  const sys = systemCode(e);
  if (sys === 'ENOSPC' || sys === 'EDQUOT' || sys === 'EFBIG') return 'full';
  if (sys === 'EIO') return 'io';
  if (sys === 'EROFS' || sys === 'EACCES' || sys === 'EPERM') return 'readonly';
  return undefined;
}

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * An SQLite file SQLite cannot open any more, as opposed to a file that never was one (a text
 * file given as --db): it still starts with SQLite's magic bytes, or its first page was zeroed
 * and the next one is a B-tree page.
 */
export function looksLikeDamagedLedger(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const head = Buffer.alloc(8192);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n >= 16 && head.subarray(0, 16).equals(SQLITE_MAGIC)) return true;
    // A zeroed first page (4 KiB, SQLite's default page size) followed by a B-tree page (its
    // first byte is the page type: 2, 5, 10 or 13).
    if (n < 8192) return false;
    for (let i = 0; i < 4096; i++) if (head[i] !== 0) return false;
    return [2, 5, 10, 13].includes(head[4096]!);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** "a character device" for --db /dev/null: what a path is when it is no regular file. */
export function notAFile(st: Stats): string | undefined {
  if (st.isFile()) return undefined;
  if (st.isDirectory()) return 'a folder';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Bytes free (for this user) on the file system that holds `path` (or would), if it can be told. */
function freeBytes(path: string): number | undefined {
  try {
    const s = statfsSync(dirname(resolve(path)));
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}

/** An I/O error on a file system with (almost) no space left is a full disk. */
const LOW_SPACE = 256 * 1024;

export interface FaultAnswer {
  kind: FaultKind;
  exitCode: 1 | 2 | 75;
  /** One line, without the `iommu-ledger: ` prefix. */
  message: string;
  /** The file the fault is about. */
  path: string;
  /** SQLite's (or Node's) code and message. */
  reason: string;
}

/**
 * The answer to a storage fault met by `command` (the subcommand's name) on the ledger `db`
 * (--db); undefined when `e` is no storage fault.
 */
export function describeFault(e: unknown, where: { db: string; command?: string }): FaultAnswer | undefined {
  const ctx = faultContext(e);
  const path = ctx?.path ?? (e instanceof LedgerDamagedError ? e.path : undefined) ?? (systemPath(e) || where.db);
  const kind = faultKind(e, path);
  if (kind === undefined) return undefined;
  const command = where.command ?? 'the command';
  const why = reasonOf(e);
  const answer = (message: string): FaultAnswer => ({ kind, exitCode: FAULT_EXIT[kind], message, path, reason: why });
  const safe = whatIsSafe(command, kind, ctx, path === where.db);
  switch (kind) {
    case 'busy':
      return answer(
        `${path} is busy: another process has held its write lock for more than ${busyTimeoutMs() / 1000} s (a rebuild, an import, a large apply); nothing was stored by this command: run it again when that one is done`,
      );
    case 'full':
      return answer(`${path}: the disk is full (${why}); ${safe}; ${againWhen(command, 'free some space')}`);
    case 'io': {
      const free = freeBytes(path);
      if (free !== undefined && free < LOW_SPACE) {
        return answer(
          `${path}: the disk is full (${why}; ${free} bytes free): SQLite needs some space beside a ledger (${path}-wal, ${path}-shm) even to read it; ${safe}; ${againWhen(command, 'free some space')}`,
        );
      }
      return answer(
        `${path}: an I/O error (${why}): the disk or file system failed a read or a write; ${safe}; ${againWhen(command, 'check the device and its free space (df, dmesg)')}`,
      );
    }
    case 'readonly':
      if (systemCode(e)) return answer(`cannot write ${path} (${why}); ${safe}; give a path this user can write`);
      return answer(
        `${path} cannot be written by this user (${why}); ${safe}; '${command}' writes to the ledger: run it as a user who can write ${path} and its folder (SQLite also writes ${path}-wal and ${path}-shm), or on a copy of your own`,
      );
    case 'cantopen':
      return answer(cannotOpen(path, why));
    case 'damaged':
      return answer(
        `${path} is damaged (${why}); ${command === 'verify' ? 'nothing was changed' : `'${command}' stopped and changed nothing`}; run 'iommu-ledger --db ${path} verify' to see what can still be read and where the damage starts, and restore the ledger from a copy`,
      );
    case 'not-sqlite':
      return answer(`${path} is not an iommu-ledger ledger: ${firstLine(e)}`);
  }
}

/** A ledger SQLite could not open, or not open for writing (SQLITE_CANTOPEN*, SQLITE_READONLY* while opening). */
export function cannotOpen(path: string, why: string): string {
  return `cannot open ${path} (${why}): SQLite keeps ${path}-wal and ${path}-shm next to a ledger, even to read it, so the ledger and its folder must be writable by you; copy it to a folder you can write`;
}

/** The message of an error, `CODE: message`, its first line. */
export function reasonOf(e: unknown): string {
  const code = sqliteCode(e) ?? systemCode(e);
  return code ? `${code}: ${firstLine(e)}` : firstLine(e);
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0]!;
}

function systemPath(e: unknown): string | undefined {
  const p = (e as { path?: unknown } | null | undefined)?.path;
  return systemCode(e) && typeof p === 'string' ? p : undefined;
}

/** What a fault left as it was, by command. */
function whatIsSafe(command: string, kind: FaultKind, ctx: FaultContext | undefined, onLedger: boolean): string {
  const committed = ctx?.committed ?? 0;
  const head = ctx?.head;
  if (!onLedger) return `'${command}' stopped; nothing else was changed`;
  switch (command) {
    case 'import':
      return committed > 0
        ? `this import committed ${committed} event(s) before it stopped${head !== undefined ? ` (the ledger ends at event #${head})` : ''}; the part being written was rolled back, nothing is half-written`
        : 'this import stored nothing; every event committed before is intact';
    case 'apply':
      return 'nothing of this apply was stored (it stores all its commands or none); every event committed before is intact';
    case 'rebuild':
      return 'the rebuild was rolled back: the events and the projections are as they were';
    default:
      return kind === 'readonly' ? 'nothing was stored' : 'nothing was changed; every committed event is intact';
  }
}

/** What to do: `first` (free some space), then the same command again. */
function againWhen(command: string, first: string): string {
  switch (command) {
    case 'import':
      return `${first}, then run the same import again: it stores only what is missing`;
    case 'rebuild':
      return `${first} (a rebuild can need as much free space as the ledger's size), then run rebuild again`;
    case 'apply':
      return `${first}, then run the same apply again`;
    default:
      return `${first}, then run the command again`;
  }
}

/**
 * TESTS ONLY: `IOMMU_LEDGER_TEST_MAX_PAGES` = `N` (at most N pages of the file's page size) or
 * `+N` (at most N pages more than the file has when opened) limits the size of every ledger
 * opened read-write in this process through SQLite's `PRAGMA max_page_count`, so that a write past
 * it fails with SQLITE_FULL exactly as on a full disk, without root or a small file system.
 * Unset (always, outside the tests), nothing is done.
 */
export const TEST_MAX_PAGES_ENV = 'IOMMU_LEDGER_TEST_MAX_PAGES';

export function testPageLimit(db: { pragma(sql: string, o?: { simple: boolean }): unknown }): void {
  const v = process.env[TEST_MAX_PAGES_ENV];
  if (v === undefined || v === '') return;
  const m = /^(\+?)(\d+)$/.exec(v.trim());
  if (!m) throw new Error(`${TEST_MAX_PAGES_ENV}=${JSON.stringify(v)}: give N or +N pages`);
  const n = Number(m[2]);
  const limit = m[1] ? (db.pragma('page_count', { simple: true }) as number) + n : n;
  db.pragma(`max_page_count = ${limit}`);
}
