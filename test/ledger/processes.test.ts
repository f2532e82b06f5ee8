import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { Ledger } from '../../src/projections/ledger.js';
import { projectionSnapshot, tempDb } from './helpers.js';

const CHILD = join(__dirname, 'writer-child.ts');
const VITE_NODE = join(__dirname, '..', '..', 'node_modules', '.bin', 'vite-node');

function child(args: string[]) {
  return spawn(VITE_NODE, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Kills the child (SIGKILL) once it has reported `n` commits; resolves with the last count it reported. */
async function killAfter(p: ReturnType<typeof child>, n: number): Promise<number> {
  let reported = 0;
  let stderr = '';
  p.stderr.on('data', (d) => (stderr += String(d)));
  await new Promise<void>((resolve, reject) => {
    p.stdout.on('data', (d: Buffer) => {
      const m = /committed (\d+)\s*$/.exec(String(d).trim());
      if (m) reported = Number(m[1]);
      if (reported >= n) {
        p.kill('SIGKILL');
        resolve();
      }
    });
    p.on('exit', (code) => (reported >= n ? resolve() : reject(new Error(`child exited ${code}: ${stderr}`))));
  });
  await new Promise((r) => p.on('close', r));
  return reported;
}

function init(path: string): void {
  const l = new Ledger(path);
  l.appendRaw([{ op: 'domain', domain: 'd0', profile: 'intel-vtd' }]);
  l.close();
}

describe('writers in other processes', () => {
  it('a writer that defers its projections, killed, leaves its events to the next command, which answers at the last of them', async () => {
    const path = tempDb();
    init(path);
    const p = child([path, 'deferred', '100000', 'A']);
    await killAfter(p, 40);
    const raw = new Database(path, { readonly: true });
    const head = raw.prepare('SELECT max(position) FROM events').pluck().get() as number;
    const at = raw.prepare("SELECT position FROM checkpoints WHERE projection = 'inline'").pluck().get() as number;
    raw.close();
    expect(head).toBeGreaterThanOrEqual(41);
    expect(at).toBe(1); // the child's projections were never written
    // The command as a user runs it, in its own process: it loads the write path only now.
    const cli = spawnSync(
      process.execPath,
      ['--import', 'tsx', join(__dirname, '..', '..', 'src', 'cli', 'bin.ts'), '--db', path, '--json', 'state', '--domain', 'd0'],
      {
        encoding: 'utf8',
      },
    );
    expect(cli.stderr).toBe('');
    const state = JSON.parse(cli.stdout) as { at: number; pages: unknown[] };
    expect(state.at).toBe(head);
    expect(state.pages).toHaveLength(head - 1);
  });

  it('SIGKILL in the middle of a large append loses nothing committed and leaves a consistent ledger', async () => {
    const path = tempDb();
    init(path);
    const BATCH = 2000;
    const p = child([path, 'batches', '400', String(BATCH), 'K']);
    const reported = await killAfter(p, 3);
    const l = new Ledger(path);
    const n = l.lastPosition;
    // whole batches only, at least every batch that reported its commit
    expect((n - 1) % BATCH).toBe(0);
    expect((n - 1) / BATCH).toBeGreaterThanOrEqual(reported);
    expect((n - 1) / BATCH).toBeLessThan(400);
    expect(l.store.verify().ok).toBe(true);
    const before = projectionSnapshot(l.db);
    l.rebuild();
    expect(projectionSnapshot(l.db)).toEqual(before);
    // and it accepts more
    expect(l.appendRaw([{ op: 'unmap', domain: 'd0', iova: '0', size: '4K' }])[0]!.position).toBe(n + 1);
    l.close();
  }, 120_000);

  it('two processes appending to one ledger never lose or duplicate an event', async () => {
    const path = tempDb();
    init(path);
    const N = 150;
    const run = (tag: string) =>
      new Promise<void>((resolve, reject) => {
        const p = child([path, 'single', String(N), tag]);
        let err = '';
        p.stderr.on('data', (d) => (err += String(d)));
        p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`writer ${tag} exited ${code}: ${err}`))));
      });
    await Promise.all([run('A'), run('B')]);
    const l = new Ledger(path);
    expect(l.lastPosition).toBe(1 + 2 * N);
    const ids = l.db.prepare("SELECT event_id FROM stored_events WHERE type = 'map'").pluck().all() as string[];
    expect(new Set(ids).size).toBe(2 * N);
    for (const tag of ['A', 'B']) for (let i = 0; i < N; i++) expect(ids).toContain(`${tag}-${i}`);
    const versions = l.db.prepare('SELECT version FROM events ORDER BY position').pluck().all() as number[];
    expect(versions).toEqual(Array.from({ length: 1 + 2 * N }, (_, i) => i + 1));
    expect(l.store.verify().ok).toBe(true);
    const live = l.db.prepare('SELECT count(*) FROM runs WHERE valid_to IS NULL').pluck().get();
    expect(live).toBe(2 * N);
    l.close();
  }, 120_000);
});
