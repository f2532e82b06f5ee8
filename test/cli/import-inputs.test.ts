/**
 * `import` reads what a user has: a compressed trace, a trace-cmd binary file, standard input, a
 * FIFO (the reader stage, src/import/read.ts, seen through the command). The trace is
 * test/fixtures/real/lazy-multidev-boot.trace: res-intel-vtd-lazy-multidev/trace.txt lines 1-250
 * (boot of a VM with three disks: several address spaces, attaches, scatter-gather lists).
 * Compressed copies are made here (gzip with node:zlib; zstd and xz with the system tools, as
 * test/import/read.test.ts does, skipped when they are missing). Standard input, FIFOs and the
 * PATH without trace-cmd need a child process running the command (`node --import tsx
 * src/cli/bin.ts`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { findCommand } from '../../src/import/decompress.js';
import { tempDb } from '../ledger/helpers.js';
import { fixture, ledgerDepth, plainReplay, realRecords, runsOf, storedEvents, type StoredEvent } from '../import/real-helpers.js';
import { cli } from './helpers.js';

const ROOT = join(__dirname, '..', '..');
const BIN = join(ROOT, 'src', 'cli', 'bin.ts');
const TRACE = fixture('lazy-multidev-boot.trace');
const TEXT = readFileSync(TRACE, 'utf8');
const RECORDS = realRecords(TEXT).length; // maps and unmaps

/** The import's decisions, without what names the source (file name, digest, the ids made from it). */
const decisions = (evs: StoredEvent[]) => evs.map((e) => ({ type: e.type, stream: e.stream, body: e.data.body, who: e.data.who, line: e.data.from?.line }));

/** A copy of the trace under another name, next to a new ledger. */
function copy(db: string, name: string, bytes: Buffer | string = TEXT): string {
  const f = join(db, '..', name);
  writeFileSync(f, bytes);
  return f;
}

function mapUnmapCount(db: string): number {
  try {
    const raw = new Database(db, { readonly: true });
    try {
      return raw.prepare("SELECT count(*) FROM events WHERE type IN ('map', 'unmap')").pluck().get() as number;
    } finally {
      raw.close();
    }
  } catch {
    return 0; // not created yet, or its tables not yet
  }
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** The command in a child process; `done` resolves with its exit code and output. */
function child(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): { p: ChildProcess; done: Promise<{ code: number | null; signal: string | null; out: string; err: string }> } {
  const p = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(p);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ code: number | null; signal: string | null; out: string; err: string }>((r) =>
    p.on('close', (code, signal) => r({ code, signal, out, err })),
  );
  return { p, done };
}

async function until(pred: () => boolean, what: string, ms = 20_000): Promise<void> {
  for (let t = 0; !pred(); t += 50) {
    if (t > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The plain file imported into a new ledger: the reference. */
async function plainImport(): Promise<{ db: string; events: StoredEvent[]; spaces: string[] }> {
  const db = tempDb();
  const r = await cli('--db', db, '--json', 'import', copy(db, 'boot.trace'), '--profile', 'intel-vtd');
  expect(r.code, r.err).toBe(0);
  return { db, events: storedEvents(db), spaces: (JSON.parse(r.out) as { spaces: string[] }).spaces };
}

describe('compressed traces: the same events as the plain file, and the same source', () => {
  const zstd = findCommand('zstd');
  const xz = findCommand('xz');
  const kinds: Array<{ name: string; ext: string; make: ((plain: string) => Buffer) | undefined }> = [
    { name: 'gzip (node:zlib)', ext: 'gz', make: () => gzipSync(TEXT) },
    { name: 'zstd (the zstd command)', ext: 'zst', make: zstd ? () => spawnSync(zstd, ['-q', '-c', '-19'], { input: TEXT }).stdout : undefined },
    { name: 'xz (the xz command)', ext: 'xz', make: xz ? () => spawnSync(xz, ['-c', '-6'], { input: TEXT }).stdout : undefined },
  ];
  for (const k of kinds) {
    it.skipIf(!k.make)(
      `${k.name}: stored exactly as the plain file (ids included), and recognised as imported already (skipped when the tool is not on PATH)`,
      async () => {
        const ref = await plainImport();
        expect(ref.spaces.length).toBeGreaterThan(1);
        const bytes = k.make!(TRACE);
        expect(bytes.length).toBeGreaterThan(0);
        expect(bytes.length).toBeLessThan(TEXT.length / 3);
        // Into a new ledger: the same events; the ids too, as the source is its decompressed content.
        const db = tempDb();
        const f = copy(db, `boot.trace.${k.ext}`, bytes);
        const r = await cli('--db', db, '--json', 'import', f, '--profile', 'intel-vtd');
        expect(r.code, r.err).toBe(0);
        const s = JSON.parse(r.out) as { compressed?: string; records: number };
        expect(s.compressed).toBeDefined();
        const evs = storedEvents(db);
        expect(decisions(evs)).toEqual(decisions(ref.events));
        expect(evs.map((e) => e.id)).toEqual(ref.events.map((e) => e.id));
        expect(new Set(evs.map((e) => e.data.from?.source))).toEqual(new Set([`boot.trace.${k.ext}`]));
        // Into the ledger that holds the plain file: the same source, nothing new.
        const again = await cli('--db', ref.db, 'import', copy(ref.db, `again.trace.${k.ext}`, bytes), '--profile', 'intel-vtd');
        expect(again.code, again.err).toBe(0);
        expect(again.out).toMatch(/: already imported into .* \(as boot\.trace, /);
        expect(storedEvents(ref.db)).toHaveLength(ref.events.length);
        // And the other way round: the plain file after the compressed one.
        const plain = await cli('--db', db, 'import', copy(db, 'plain.trace'), '--profile', 'intel-vtd');
        expect(plain.out).toMatch(new RegExp(`: already imported into .* \\(as boot\\.trace\\.${k.ext}, `));
        expect(storedEvents(db)).toHaveLength(evs.length);
      },
    );
  }
});

describe('a trace-cmd binary file when trace-cmd is not on PATH', () => {
  it('exits 2 naming the command that converts it, and leaves no ledger behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommu-ledger-path-'));
    // A PATH with node on it and nothing else (no trace-cmd).
    const bin = join(dir, 'bin');
    spawnSync('mkdir', [bin]);
    symlinkSync(process.execPath, join(bin, 'node'));
    expect(findCommand('node', bin)).toBeDefined();
    expect(findCommand('trace-cmd', bin)).toBeUndefined();
    // trace-cmd's magic: 0x17 0x08 0x44 "tracing", then the version.
    const dat = join(dir, 'trace.dat');
    writeFileSync(dat, Buffer.concat([Buffer.from([0x17, 0x08, 0x44]), Buffer.from('tracing6\0'), Buffer.alloc(200)]));
    const db = join(dir, 'l.db');
    const { done } = child(['--db', db, 'import', dat, '--profile', 'intel-vtd'], { ...process.env, PATH: bin });
    const r = await done;
    expect(r.code, r.err).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain(`cannot read ${dat}: it is a trace-cmd binary file (trace.dat), and trace-cmd is not on PATH`);
    expect(r.err).toContain(`'trace-cmd report -i ${dat} > ${dat}.txt'`);
    expect(existsSync(db)).toBe(false);
  }, 30_000);
});

describe('streams', () => {
  it("standard input ('import -'): the records are stored as from the file, under <stdin>; the same stream again is recognised", async () => {
    const ref = await plainImport();
    const db = tempDb();
    const { p, done } = child(['--db', db, 'import', '-', '--profile', 'intel-vtd']);
    p.stdin!.end(TEXT);
    const r = await done;
    expect(r.code, r.err).toBe(0);
    expect(r.out.split('\n')[0]).toMatch(new RegExp(`^<stdin>: 250 lines, 238 IOMMU records, ${ref.events.length} events stored`));
    const evs = storedEvents(db);
    expect(evs.filter((e) => e.type === 'map' || e.type === 'unmap')).toHaveLength(RECORDS);
    expect(decisions(evs)).toEqual(decisions(ref.events));
    expect(new Set(evs.map((e) => e.data.from?.source))).toEqual(new Set(['<stdin>']));
    // The same bytes on standard input again: known by their head, nothing stored twice.
    const second = child(['--db', db, 'import', '-', '--profile', 'intel-vtd']);
    second.p.stdin!.end(TEXT);
    const r2 = await second.done;
    expect(r2.code, r2.err).toBe(0);
    expect(storedEvents(db)).toHaveLength(evs.length);
  }, 60_000);

  it('gzip bytes on standard input are decompressed as they come: the same decisions as the plain file', async () => {
    const ref = await plainImport();
    const db = tempDb();
    const { p, done } = child(['--db', db, '--json', 'import', '-', '--profile', 'intel-vtd']);
    p.stdin!.end(gzipSync(TEXT));
    const r = await done;
    expect(r.code, r.err).toBe(0);
    expect((JSON.parse(r.out) as { compressed?: string }).compressed).toBe('gzip');
    expect(decisions(storedEvents(db))).toEqual(decisions(ref.events));
  }, 60_000);

  // A stream that ends before it pauses (`cat trace | import -`) is a whole file, known by its
  // digest like the file (src/import/store.ts, STREAM_HOLD): the same bytes are not stored twice.
  it('the same bytes on standard input after the file was imported: recognised, nothing stored twice', async () => {
    const db = tempDb();
    const md = fixture('md.trace');
    const first = await cli('--db', db, 'import', md, '--profile', 'intel-vtd');
    expect(first.code, first.err).toBe(0);
    const stored = storedEvents(db).length;
    const { p, done } = child(['--db', db, 'import', '-', '--profile', 'intel-vtd']);
    p.stdin!.end(readFileSync(md));
    const r = await done;
    expect(r.code, r.err).toBe(0);
    expect(storedEvents(db)).toHaveLength(stored);
    expect(r.out).toMatch(/^<stdin>: already imported into /);
  }, 60_000);

  it('a FIFO: the records of the first half are stored while the writer still holds it open; then the rest', async () => {
    const db = tempDb();
    const fifo = join(db, '..', 'trace.fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const lines = TEXT.split('\n');
    const half = `${lines.slice(0, 125).join('\n')}\n`;
    const firstRecords = realRecords(half).length;
    expect(firstRecords).toBeGreaterThan(50);
    const { p, done } = child(['--db', db, 'import', fifo, '--profile', 'intel-vtd']);
    const w = await openFile(fifo, 'w'); // waits for the child to open the FIFO
    await w.write(half);
    await until(() => mapUnmapCount(db) >= firstRecords, `the ${firstRecords} records of the first half in the ledger`);
    expect(p.exitCode).toBeNull(); // still reading: the writer has not closed
    expect(mapUnmapCount(db)).toBe(firstRecords);
    await w.write(TEXT.slice(half.length));
    await w.close();
    const r = await done;
    expect(r.code, r.err).toBe(0);
    expect(mapUnmapCount(db)).toBe(RECORDS);
    const spaces = [...new Set(storedEvents(db).map((e) => e.stream))];
    expect(runsOf(ledgerDepth(db, spaces))).toEqual(runsOf(plainReplay(TEXT).depth));
  }, 60_000);

  // Without --profile, a stream's profile is judged from the lines that come before it pauses:
  // its first records are stored while the writer keeps it open.
  it('a FIFO without --profile: the records of the first half are stored while the writer still holds it open', async () => {
    const db = tempDb();
    const fifo = join(db, '..', 'trace.fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const half = `${TEXT.split('\n').slice(0, 125).join('\n')}\n`;
    const firstRecords = realRecords(half).length;
    const { p } = child(['--db', db, 'import', fifo]);
    const w = await openFile(fifo, 'w');
    try {
      await w.write(half);
      await until(() => mapUnmapCount(db) >= firstRecords, `the ${firstRecords} records of the first half in the ledger`, 6_000);
      expect(p.exitCode).toBeNull();
    } finally {
      p.kill('SIGKILL');
      await w.close();
    }
  }, 30_000);

  // Ctrl-C on a stream whose writer keeps it open: what was read is stored, the report printed,
  // and the read still pending on the pipe does not hold the import (read.ts destroys the stream).
  it('Ctrl-C ends an import of a FIFO that its writer keeps open: exit 0, the report printed, the records stored', async () => {
    const db = tempDb();
    const fifo = join(db, '..', 'trace.fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const half = `${TEXT.split('\n').slice(0, 125).join('\n')}\n`;
    const firstRecords = realRecords(half).length;
    const { p, done } = child(['--db', db, 'import', fifo, '--profile', 'intel-vtd']);
    const w = await openFile(fifo, 'w');
    try {
      await w.write(half);
      await until(() => mapUnmapCount(db) >= firstRecords, 'the records of the first half');
      p.kill('SIGINT');
      const r = await Promise.race([done, new Promise<'still running'>((res) => setTimeout(() => res('still running'), 6_000))]);
      // What the import did store before it hung is right: all of the first half.
      expect(mapUnmapCount(db)).toBe(firstRecords);
      expect(r).not.toBe('still running');
      if (r === 'still running') return;
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/trace\.fifo: 125 lines, /);
    } finally {
      p.kill('SIGKILL');
      await w.close();
    }
  }, 30_000);
});
