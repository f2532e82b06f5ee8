/**
 * An import killed mid-way and run again ends exactly as one uninterrupted import (issue 12:
 * a resumed import runs the whole trace again on shadows of its own spaces, and the ledger
 * recognises by id what was stored). The trace has several address spaces, mappings inferred
 * from before the trace, and over 40,000 lines (two committed chunks of 20,000 and a last one):
 * two real extracts in turn, 100 times, each round later in time and at IOVAs of its own, so that
 * no round's mappings meet another's:
 * - test/fixtures/real/lazy-multidev-boot.trace (res-intel-vtd-lazy-multidev/trace.txt lines
 *   1-250: three disks' domains mapping the same IOVAs, the floppy's identity map);
 * - test/fixtures/real/amd-midstream-nvme.trace (res-amd-vi-midstream-nvme/trace.txt lines 1-12
 *   and 10751-10945: scatter-gather I/O, then 13 unmaps of queues mapped before the trace).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { projectionSnapshot, tempDb } from '../ledger/helpers.js';
import { fixture, ledgerDepth, plainReplay, runsOf, storedEvents } from '../import/real-helpers.js';
import { cli } from './helpers.js';

const ROOT = join(__dirname, '..', '..');
const BIN = join(ROOT, 'src', 'cli', 'bin.ts');

/** A fixture's record lines, shifted by `dt` seconds and `di` bytes of IOVA. */
function shifted(name: string, dt: number, di: bigint): string[] {
  const hex16 = (v: bigint) => `0x${v.toString(16).padStart(16, '0')}`;
  return readFileSync(fixture(name), 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) =>
      l
        .replace(/ (\d+)\.(\d{6}): /, (_m, s: string, f: string) => ` ${Number(s) + dt}.${f}: `)
        .replace(
          /iova=0x([0-9a-f]{16}) - 0x([0-9a-f]{16})/,
          (_m, a: string, b: string) => `iova=${hex16(BigInt(`0x${a}`) + di)} - ${hex16(BigInt(`0x${b}`) + di)}`,
        ),
    );
}

/**
 * `copies` rounds of lazy-multidev-boot.trace (1.85-9.31 s) then amd-midstream-nvme.trace
 * (25.71-25.87 s), round k 30k seconds later, the first at IOVA + 2k * 4 GiB, the second at
 * IOVA + (2k + 1) * 4 GiB; the header lines of the first, once.
 */
function longTrace(copies: number): string {
  const header = readFileSync(fixture('lazy-multidev-boot.trace'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('#'));
  const out = [...header];
  for (let k = 0; k < copies; k++) {
    out.push(...shifted('lazy-multidev-boot.trace', 30 * k, BigInt(2 * k) << 32n));
    out.push(...shifted('amd-midstream-nvme.trace', 30 * k, BigInt(2 * k + 1) << 32n));
  }
  return `${out.join('\n')}\n`;
}

/** Events in the ledger file (0 before it exists). */
function count(db: string): number {
  try {
    const raw = new Database(db, { readonly: true });
    try {
      return raw.prepare('SELECT count(*) FROM events').pluck().get() as number;
    } finally {
      raw.close();
    }
  } catch {
    return 0; // not created yet, or its tables not yet
  }
}

describe('a resumed import of a multi-space trace', () => {
  it('killed after its first committed chunk, then run again: exactly the events (ids, types, streams, bodies, order) of an uninterrupted import', async () => {
    const text = longTrace(100);
    const lines = text.split('\n').length - 1;
    expect(lines).toBeGreaterThan(40_000);
    const killed = tempDb();
    const trace = join(killed, '..', 'long.trace');
    writeFileSync(trace, text);

    // The uninterrupted import, into another ledger (the same file name: the same provenance).
    const whole = tempDb();
    const wholeTrace = join(whole, '..', 'long.trace');
    writeFileSync(wholeTrace, text);
    const w = await cli('--db', whole, '--json', 'import', wholeTrace, '--profile', 'intel-vtd');
    expect(w.code, w.err).toBe(0);
    const ws = JSON.parse(w.out) as { spaces: string[]; stored: number; divergences: number; beforeTrace: number };
    expect(ws.spaces.length).toBeGreaterThan(1);
    expect(ws.divergences).toBe(0);
    expect(ws.beforeTrace).toBe(100 * 13); // the midstream part's 13 in every round
    const want = storedEvents(whole);
    expect(want).toHaveLength(ws.stored);

    // The same import in a child process, killed once its first chunk is committed.
    const p = spawn(process.execPath, ['--import', 'tsx', BIN, '--db', killed, 'import', trace, '--profile', 'intel-vtd'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise((r) => p.on('close', r));
    try {
      for (let t = 0; count(killed) === 0; t += 20) {
        if (t > 60_000 || p.exitCode !== null) throw new Error(`no chunk committed (exit ${p.exitCode}): ${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      p.kill('SIGKILL');
      await exited;
    }
    const stored = count(killed);
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThan(want.length); // killed before the end
    // What the killed run stored is a prefix of the uninterrupted import.
    const before = storedEvents(killed);
    expect(before.map((e) => [e.position, e.id, e.type, e.stream, e.data])).toEqual(
      want.slice(0, stored).map((e) => [e.position, e.id, e.type, e.stream, e.data]),
    );

    const again = await cli('--db', killed, 'import', trace, '--profile', 'intel-vtd');
    expect(again.code, again.err).toBe(0);
    expect(again.out).toContain(`${want.length - stored} events stored, ${stored} already in the ledger`);
    const got = storedEvents(killed);
    expect(got.length).toBe(want.length);
    expect(got.map((e) => [e.position, e.id, e.type, e.stream, e.data])).toEqual(want.map((e) => [e.position, e.id, e.type, e.stream, e.data]));
    // And so the same state: the union of the spaces is the plain replay.
    expect(runsOf(ledgerDepth(killed, ws.spaces))).toEqual(runsOf(plainReplay(text).depth));
    expect((await cli('--db', killed, 'verify')).code).toBe(0);
    // Every projection row is the uninterrupted import's too.
    expect(projectionsOf(killed)).toEqual(projectionsOf(whole));
    // A third run finds it imported.
    expect((await cli('--db', killed, 'import', trace, '--profile', 'intel-vtd')).out).toMatch(/already imported into/);
  }, 180_000);

  it('two imports of the same file at once (the second started once the first has committed a chunk): exactly the ledger of one import', async () => {
    const text = longTrace(100);
    const whole = tempDb();
    const wholeTrace = join(whole, '..', 'long.trace');
    writeFileSync(wholeTrace, text);
    const w = await cli('--db', whole, 'import', wholeTrace, '--profile', 'intel-vtd');
    expect(w.code, w.err).toBe(0);
    const want = storedEvents(whole);

    const both = tempDb();
    const trace = join(both, '..', 'long.trace');
    writeFileSync(trace, text);
    const run = () => {
      const p = spawn(process.execPath, ['--import', 'tsx', BIN, '--db', both, 'import', trace, '--profile', 'intel-vtd'], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      return { p, done: new Promise<{ code: number | null; out: string; err: string }>((r) => p.on('close', (code) => r({ code, out, err }))) };
    };
    const first = run();
    for (let t = 0; count(both) === 0; t += 20) {
      if (t > 60_000 || first.p.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const second = run();
    const [a, b] = await Promise.all([first.done, second.done]);
    expect(a.code, a.err).toBe(0);
    expect(b.code, b.err).toBe(0);
    const got = storedEvents(both);
    expect(got.map((e) => [e.position, e.id, e.type, e.stream, e.data])).toEqual(want.map((e) => [e.position, e.id, e.type, e.stream, e.data]));
    expect(projectionsOf(both)).toEqual(projectionsOf(whole));
    expect((await cli('--db', both, 'verify')).code).toBe(0);
  }, 240_000);
});

/** The projection tables of a ledger file, row by row (the same as an uninterrupted import's, ids included). */
function projectionsOf(path: string): Record<string, unknown[]> {
  const db = new Database(path, { readonly: true });
  try {
    return projectionSnapshot(db);
  } finally {
    db.close();
  }
}
