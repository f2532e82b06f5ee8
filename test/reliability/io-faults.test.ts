/**
 * I/O faults are not internal errors (issue 14 item 3): a full disk during `import` and `apply`,
 * no space at all for any command, a ledger this user may not write, and a --db that is no file
 * each end with exit 75 (temporary: run it again) or 2 (the path cannot be used as given) and a
 * one-line message that says what happened and what is safe, never exit 70 with a stack; and
 * nothing committed is lost (the interrupted import, run again, is exactly an uninterrupted one).
 *
 * A full disk is made two ways: SQLite's page limit through the test-only
 * IOMMU_LEDGER_TEST_MAX_PAGES (SQLITE_FULL exactly as ENOSPC gives it; runs as any user), and, as
 * root, a real tmpfs filled to the last byte (ENOSPC from the kernel: SQLITE_FULL in a
 * transaction, SQLITE_IOERR_SHMSIZE when not even the -shm file fits). Other users through a
 * child process run as nobody (as root) or through permission bits (as another user).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_MAX_PAGES_ENV } from '../../src/events/io-errors.js';
import { cli, EX } from '../cli/helpers.js';
import { tempDb } from '../ledger/helpers.js';
import {
  eventCount,
  eventRows,
  fill,
  freeBytes,
  mapCommands,
  mapTrace,
  mountTmpfs,
  openDir,
  projections,
  remount,
  runAsOther,
  unmount,
  withRead,
} from './io-helpers.js';

const SCENARIO = join(EX, 'scenario.jsonl');

/** cli() with the test-only page limit set for the call. */
async function withPageLimit(limit: string, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  process.env[TEST_MAX_PAGES_ENV] = limit;
  try {
    return await cli(...argv);
  } finally {
    delete process.env[TEST_MAX_PAGES_ENV];
  }
}

const fullImport = (db: string, n: number, end: number) =>
  `iommu-ledger: ${db}: the disk is full (SQLITE_FULL: database or disk is full); this import committed ${n} event(s) before it stopped (the ledger ends at event #${end}); the part being written was rolled back, nothing is half-written; free some space, then run the same import again: it stores only what is missing\n`;
const fullApply = (db: string) =>
  `iommu-ledger: ${db}: the disk is full (SQLITE_FULL: database or disk is full); nothing of this apply was stored (it stores all its commands or none); every event committed before is intact; free some space, then run the same apply again\n`;

/** A trace of 45,000 lines: two import transactions (20,000 lines each) and a last one. */
const PAIRS = 30_000;
let trace: string;
let whole: string;
let wholePages: number;
let wholeEvents: unknown[][];
let wholeProjections: Record<string, unknown[]>;

beforeAll(async () => {
  // The uninterrupted import every interrupted one must end up equal to (the same file name: the same provenance).
  whole = tempDb();
  trace = join(whole, '..', 'maps.trace');
  writeFileSync(trace, mapTrace(PAIRS));
  const w = await cli('--db', whole, 'import', trace, '--profile', 'intel-vtd');
  expect(w.code, w.err).toBe(0);
  wholePages = withRead(whole, (r) => r.pragma('page_count', { simple: true }) as number);
  wholeEvents = eventRows(whole);
  wholeProjections = projections(whole);
  expect(wholeEvents.length).toBe(45_001);
}, 120_000);

/** The same trace, by the same name, beside a new ledger. */
function newLedgerWithTrace(): { db: string; trace: string } {
  const db = tempDb();
  const t = join(db, '..', 'maps.trace');
  copyFileSync(trace, t);
  return { db, trace: t };
}

describe('a full disk (SQLite page limit: SQLITE_FULL, as any user)', () => {
  it('import: exit 75, how many events were committed; verify intact; the same import again ends exactly as an uninterrupted one', async () => {
    const { db, trace: t } = newLedgerWithTrace();
    // One page short of what the whole import needs: the last transaction cannot commit.
    const r = await withPageLimit(String(wholePages - 1), '--db', db, 'import', t, '--profile', 'intel-vtd');
    const n = eventCount(db);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(wholeEvents.length);
    expect(r).toEqual({ code: 75, out: '', err: fullImport(db, n, n) });
    // What was committed is a prefix of the uninterrupted import, and its chain verifies.
    expect(eventRows(db)).toEqual(wholeEvents.slice(0, n));
    const v = await cli('--db', db, 'verify');
    expect(v.code, v.err).toBe(0);
    expect(v.out).toMatch(new RegExp(`^intact: ${n} events, `));

    const again = await cli('--db', db, 'import', t, '--profile', 'intel-vtd');
    expect(again.code, again.err).toBe(0);
    expect(again.out).toContain(`${wholeEvents.length - n} events stored, ${n} already in the ledger`);
    expect(eventRows(db)).toEqual(wholeEvents);
    expect(projections(db)).toEqual(wholeProjections);
    expect((await cli('--db', db, 'verify')).code).toBe(0);
  }, 120_000);

  it('import into a ledger already at its limit: exit 75, "this import stored nothing"', async () => {
    const db = tempDb();
    expect((await cli('--db', db, 'apply', SCENARIO)).code).toBe(0);
    const r = await withPageLimit('+0', '--db', db, 'import', trace, '--profile', 'intel-vtd');
    expect(r).toEqual({
      code: 75,
      out: '',
      err: `iommu-ledger: ${db}: the disk is full (SQLITE_FULL: database or disk is full); this import stored nothing; every event committed before is intact; free some space, then run the same import again: it stores only what is missing\n`,
    });
    expect(eventCount(db)).toBe(17);
  }, 60_000);

  it('apply: exit 75, nothing of it stored (not blamed on an input line); then the same apply stores it all', async () => {
    const db = tempDb();
    expect((await cli('--db', db, 'apply', SCENARIO)).code).toBe(0);
    const before = eventRows(db);
    const file = join(db, '..', 'many.jsonl');
    writeFileSync(file, mapCommands(2000));
    const r = await withPageLimit('+0', '--db', db, 'apply', file);
    expect(r).toEqual({ code: 75, out: '', err: fullApply(db) });
    expect(eventRows(db)).toEqual(before);
    expect((await cli('--db', db, 'verify')).code).toBe(0);
    const again = await cli('--db', db, 'apply', file);
    expect(again.code, again.err).toBe(0);
    expect(eventCount(db)).toBe(17 + 2001);
  });

  it('a new ledger that cannot even be set up: exit 75, and no file is left behind', async () => {
    const db = tempDb();
    const r = await withPageLimit('10', '--db', db, 'apply', SCENARIO);
    expect(r).toEqual({ code: 75, out: '', err: fullApply(db) });
    expect(readdirSync(join(db, '..'))).toEqual([]);
    // With space, the same apply creates it.
    expect((await cli('--db', db, 'apply', SCENARIO)).code).toBe(0);
    expect(eventCount(db)).toBe(17);
  });
});

describe('a path that is no ledger file: exit 2, and nothing written beside it', () => {
  const characterDevice = '/dev/null is a character device, not a ledger file: give the path of a ledger file (import and apply create one)';

  it('--db /dev/null: every command refuses it, and no /dev/null-journal appears', async () => {
    const journal = existsSync('/dev/null-journal');
    for (const argv of [
      ['apply', SCENARIO],
      ['import', trace],
      ['state'],
      ['verify'],
      ['rebuild'],
      ['audit', 'over-unmaps'],
      ['history', '0x0'],
      ['callers'],
    ]) {
      const r = await cli('--db', '/dev/null', ...argv);
      expect(r, argv.join(' ')).toEqual({ code: 2, out: '', err: `iommu-ledger: ${characterDevice}\n` });
    }
    if (!journal) expect(existsSync('/dev/null-journal')).toBe(false);
    for (const s of ['-wal', '-shm']) expect(existsSync(`/dev/null${s}`)).toBe(false);
  });

  it('a folder and a named pipe', async () => {
    const dir = openDir('iommu-ledger-notfile-');
    try {
      expect(await cli('--db', dir, 'apply', SCENARIO)).toEqual({
        code: 2,
        out: '',
        err: `iommu-ledger: ${dir} is a folder, not a ledger file: give the path of a ledger file (import and apply create one)\n`,
      });
      const fifo = join(dir, 'pipe');
      const mk = spawnSync('mkfifo', [fifo]);
      if (mk.status === 0) {
        expect(await cli('--db', fifo, 'state')).toEqual({
          code: 2,
          out: '',
          err: `iommu-ledger: ${fifo} is a named pipe (FIFO), not a ledger file: give the path of a ledger file (import and apply create one)\n`,
        });
        expect(await cli('--db', fifo, 'apply', SCENARIO)).toMatchObject({ code: 2 });
      }
      expect(readdirSync(dir).sort()).toEqual(mk.status === 0 ? ['pipe'] : []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a ledger this user may not write (as root: run as nobody)', () => {
  let dir: string;
  beforeAll(() => {
    dir = openDir('iommu-ledger-perm-');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a read-only ledger in a folder the user may write: the writing commands exit 2 and store nothing; the questions still answer', async (ctx) => {
    const folder = join(dir, 'shared');
    mkdirSync(folder);
    const db = join(folder, 'ledger.db');
    expect((await cli('--db', db, 'apply', SCENARIO)).code).toBe(0);
    chmodSync(db, 0o444);
    chmodSync(folder, 0o1777);
    const before = readFileSync(db);
    const readonly = (command: string, safe: string) =>
      `iommu-ledger: ${db} cannot be written by this user (SQLITE_READONLY: attempt to write a readonly database); ${safe}; '${command}' writes to the ledger: run it as a user who can write ${db} and its folder (SQLite also writes ${db}-wal and ${db}-shm), or on a copy of your own\n`;
    const more = join(dir, 'more.jsonl');
    writeFileSync(more, mapCommands(3, 'more'));
    chmodSync(more, 0o644);
    const apply = runAsOther('--db', db, 'apply', more);
    if (!apply) return ctx.skip('user nobody cannot read the repository (a private checkout)');
    expect(apply).toEqual({
      code: 2,
      out: '',
      err: readonly('apply', 'nothing of this apply was stored (it stores all its commands or none); every event committed before is intact'),
    });
    const trace = join(dir, 'maps.trace');
    writeFileSync(trace, mapTrace(50));
    chmodSync(trace, 0o644);
    expect(runAsOther('--db', db, 'import', trace, '--profile', 'intel-vtd')).toEqual({
      code: 2,
      out: '',
      err: readonly('import', 'this import stored nothing; every event committed before is intact'),
    });
    expect(runAsOther('--db', db, 'rebuild')).toEqual({
      code: 2,
      out: '',
      err: readonly('rebuild', 'the rebuild was rolled back: the events and the projections are as they were'),
    });
    const state = runAsOther('--db', db, 'state', '--domain', 'gpu0');
    expect(state?.code, state?.err).toBe(0);
    expect(state?.out).toMatch(/^domain gpu0 \(intel-vtd, legacy unmap\) as of event #17:/);
    expect(runAsOther('--db', db, 'verify')).toMatchObject({ code: 0, err: '' });
    expect(readFileSync(db)).toEqual(before);
  }, 60_000);

  it('a ledger in a folder the user may not write: exit 2 for every command (SQLite needs its -wal and -shm even to read)', async (ctx) => {
    const folder = join(dir, 'locked');
    mkdirSync(folder);
    const db = join(folder, 'ledger.db');
    expect((await cli('--db', db, 'apply', SCENARIO)).code).toBe(0);
    chmodSync(db, 0o644);
    chmodSync(folder, 0o555);
    try {
      const refused = `iommu-ledger: cannot open ${db} (SQLITE_READONLY_DIRECTORY: attempt to write a readonly database): SQLite keeps ${db}-wal and ${db}-shm next to a ledger, even to read it, so the ledger and its folder must be writable by you; copy it to a folder you can write\n`;
      for (const argv of [
        ['state', '--domain', 'gpu0'],
        ['apply', SCENARIO],
      ]) {
        const r = runAsOther('--db', db, ...argv);
        if (!r) return ctx.skip('user nobody cannot read the repository (a private checkout)');
        expect(r, argv.join(' ')).toEqual({ code: 2, out: '', err: refused });
      }
      expect(readdirSync(folder)).toEqual(['ledger.db']);
    } finally {
      chmodSync(folder, 0o755);
    }
  }, 60_000);
});

describe('a real full disk (a small tmpfs, as root)', () => {
  const commands = (db: string, t: string, more: string): string[][] => [
    ['state', '--domain', 'gpu0'],
    ['audit', 'over-unmaps'],
    ['history', '0x200000', '--domain', 'gpu0'],
    ['callers'],
    ['verify'],
    ['rebuild'],
    ['apply', more],
    ['import', t, '--profile', 'intel-vtd'],
    ['replay', '--semantics', 'strict', '--out', join(db, '..', 'strict.db')],
  ];

  it('an import that fills the disk: exit 75 with what was committed; with space again, the same import ends exactly as an uninterrupted one', async (ctx) => {
    const m = mountTmpfs('16m');
    if ('why' in m) return ctx.skip(m.why);
    try {
      const db = join(m.dir, 'ledger.db');
      // The trace beside (not on) the small file system, by the same name as the uninterrupted import's.
      const named = join(openDir('iommu-ledger-trace-'), 'maps.trace');
      copyFileSync(trace, named);
      const r = await cli('--db', db, 'import', named, '--profile', 'intel-vtd');
      const n = eventCount(db);
      expect(n).toBeGreaterThan(0);
      expect(n).toBeLessThan(wholeEvents.length);
      expect(r).toEqual({ code: 75, out: '', err: fullImport(db, n, n) });
      expect(eventRows(db)).toEqual(wholeEvents.slice(0, n));
      remount(m.dir, '256m');
      expect((await cli('--db', db, 'verify')).code).toBe(0);
      const again = await cli('--db', db, 'import', named, '--profile', 'intel-vtd');
      expect(again.code, again.err).toBe(0);
      expect(eventRows(db)).toEqual(wholeEvents);
      expect(projections(db)).toEqual(wholeProjections);
      rmSync(join(named, '..'), { recursive: true, force: true });
    } finally {
      unmount(m.dir);
    }
  }, 180_000);

  it('0 bytes free: every command exits 75 saying the disk is full and what is safe; with space again, nothing was lost', async (ctx) => {
    const m = mountTmpfs('4m');
    if ('why' in m) return ctx.skip(m.why);
    try {
      const src = tempDb();
      expect((await cli('--db', src, 'apply', SCENARIO)).code).toBe(0);
      const db = join(m.dir, 'ledger.db');
      copyFileSync(src, db);
      const t = join(src, '..', 'maps.trace');
      writeFileSync(t, mapTrace(100));
      const more = join(src, '..', 'more.jsonl');
      writeFileSync(more, mapCommands(3, 'more'));
      const filler = fill(m.dir);
      const free = freeBytes(m.dir);
      expect(free).toBeLessThan(4096);
      const full = (safe: string, todo: string) =>
        `iommu-ledger: ${db}: the disk is full (SQLITE_IOERR_SHMSIZE: disk I/O error; ${free} bytes free): SQLite needs some space beside a ledger (${db}-wal, ${db}-shm) even to read it; ${safe}; free some space, ${todo}\n`;
      const expected: Record<string, string> = {
        apply: full(
          'nothing of this apply was stored (it stores all its commands or none); every event committed before is intact',
          'then run the same apply again',
        ),
        import: full('this import stored nothing; every event committed before is intact', 'then run the same import again: it stores only what is missing'),
        rebuild: `iommu-ledger: ${db}: the disk is full (SQLITE_IOERR_SHMSIZE: disk I/O error; ${free} bytes free): SQLite needs some space beside a ledger (${db}-wal, ${db}-shm) even to read it; the rebuild was rolled back: the events and the projections are as they were; free some space (a rebuild can need as much free space as the ledger's size), then run rebuild again\n`,
      };
      for (const argv of commands(db, t, more)) {
        const r = await cli('--db', db, ...argv);
        expect(r, argv.join(' ')).toEqual({
          code: 75,
          out: '',
          err: expected[argv[0]!] ?? full('nothing was changed; every committed event is intact', 'then run the command again'),
        });
      }
      rmSync(filler);
      const v = await cli('--db', db, 'verify');
      expect(v.code, v.err).toBe(0);
      expect(v.out).toMatch(/^intact: 17 events, /);
      expect(eventRows(db)).toEqual(eventRows(src));
      expect((await cli('--db', db, 'apply', more)).code).toBe(0);
    } finally {
      unmount(m.dir);
    }
  }, 120_000);

  it('a rebuild that fills the disk: exit 75, and the projections are as they were', async (ctx) => {
    const m = mountTmpfs('64m');
    if ('why' in m) return ctx.skip(m.why);
    try {
      const db = join(m.dir, 'ledger.db');
      copyFileSync(whole, db);
      const before = projections(db); // (also leaves the -shm in place: the open below needs no new space)
      const filler = fill(m.dir, 1 << 20);
      const r = await cli('--db', db, 'rebuild');
      expect(r).toEqual({
        code: 75,
        out: '',
        err: `iommu-ledger: ${db}: the disk is full (SQLITE_FULL: database or disk is full); the rebuild was rolled back: the events and the projections are as they were; free some space (a rebuild can need as much free space as the ledger's size), then run rebuild again\n`,
      });
      rmSync(filler);
      expect(projections(db)).toEqual(before);
      expect(eventRows(db)).toEqual(wholeEvents);
      expect((await cli('--db', db, 'verify')).code).toBe(0);
      expect(statSync(db).size).toBeGreaterThan(0);
    } finally {
      unmount(m.dir);
    }
  }, 120_000);
});
