/**
 * `import` end to end, in-process (run() is what bin.js calls): real trace files, real ledgers,
 * the exit codes, messages and report lines a user sees.
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { cli, EX } from './helpers.js';
import { tempDb } from '../ledger/helpers.js';

const BIN = join(__dirname, '..', '..', 'src', 'cli', 'bin.ts');
const VITE_NODE = join(__dirname, '..', '..', 'node_modules', '.bin', 'vite-node');

/** A file next to the ledger. */
function file(db: string, name: string, text: string): string {
  const f = join(db, '..', name);
  writeFileSync(f, text);
  return f;
}

/** The 2011 OMAP trace with its last line ended (the example file has no final newline). */
function omapTrace(db: string): string {
  return file(db, 'o2.trace', `${readFileSync(join(EX, 'omap-2011.trace'), 'utf8')}\n`);
}

function events(db: string): number {
  const raw = new Database(db, { readonly: true });
  try {
    return (raw.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  } finally {
    raw.close();
  }
}

/** A ledger holding gpu0 (intel-vtd) and dsp (destroyed): examples/scenario.jsonl. */
async function scenarioLedger(): Promise<string> {
  const db = tempDb();
  expect((await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'))).code).toBe(0);
  return db;
}

const L = (ts: string, body: string) => `  gst-launch-1.0-606   [000] ....  ${ts}: ${body}`;

/** An ftrace file of n records: a 4K map, then its unmap, over `slots` IOVAs in turn. */
function pairsTrace(n: number, slots: number): string {
  const lines = ['# tracer: nop'];
  for (let i = 0; i < n; i++) {
    const iova = `0x${(0x100000 + ((i >> 1) % slots) * 0x1000).toString(16).padStart(16, '0')}`;
    lines.push(
      L(
        `${1000 + i}.000001`,
        i % 2 ? `unmap: IOMMU: iova=${iova} size=4096 unmapped_size=4096` : `map: IOMMU: iova=${iova} paddr=0x0000000080000000 size=4096`,
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Waits until the ledger holds n events (another process, or a following import, writes them). */
async function waitForEvents(db: string, n: number): Promise<void> {
  const soFar = () => {
    try {
      return events(db);
    } catch {
      return 0; // not created yet, or its tables not yet
    }
  };
  while (soFar() < n) await new Promise((r) => setTimeout(r, 50));
}

describe('iommu-ledger import', () => {
  it('a directory exits 2 with "cannot read", as apply does, and stores nothing', async () => {
    const db = tempDb();
    const dir = join(db, '..', 'traces');
    mkdirSync(dir);
    const r = await cli('--db', db, 'import', dir);
    expect(r).toEqual({ code: 2, out: '', err: `iommu-ledger: cannot read ${dir}: EISDIR: illegal operation on a directory, read\n` });
    const a = await cli('--db', db, 'apply', dir);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/^iommu-ledger: cannot read .*: EISDIR/);
  });

  it('records routed to an existing --domain: the divergences name its stored profile, and the profile check names the one that fits', async () => {
    const db = await scenarioLedger();
    const r = await cli('--db', db, 'import', omapTrace(db), '--domain', 'gpu0');
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[1]).toMatch(/^profile: omap \(inferred: fault records name the omap-iommu driver/);
    expect(lines).toContain('existing domains keep their own profile: gpu0 intel-vtd (--profile and --semantics apply only to the domains an import creates)');
    // The 4K unmap that removed a 1M page diverges; the pages follow the kernel, so the later
    // unmap of that 1M (unmapped_size=0) is predicted right.
    expect(lines).toContain(
      "divergences: 1 unmap(s) where the trace's unmapped_size differs from intel-vtd's prediction; the pages follow the kernel — see 'iommu-ledger audit divergences'",
    );
    expect(lines).toContain(
      "profile check: replaying these domains under each built-in profile, omap 0, amd-v1 0, intel-vtd 1, intel-vtd-5level 1 divergence(s) — omap fits the trace better: try 'iommu-ledger replay --profile omap --domain gpu0 --out other.db'",
    );
    expect(r.out).not.toMatch(/omap's prediction/);
  });

  it('records routed to an existing --domain: the page split is checked against its stored profile', async () => {
    const db = await scenarioLedger();
    const r = await cli('--db', db, 'import', join(EX, 'dmesg-debug.log'), '--profile', 'omap', '--domain', 'gpu0');
    expect(r.code).toBe(0);
    expect(r.out.split('\n')).toContain(
      'existing domains keep their own profile: gpu0 intel-vtd (--profile and --semantics apply only to the domains an import creates)',
    );
    // The kernel's 2M chunks are intel-vtd's split (omap's would be 1M pages), and intel-vtd predicts every unmap.
    expect(r.out).not.toMatch(/page split:|divergences:/);
    const fresh = await cli('--db', tempDb(), 'import', join(EX, 'dmesg-debug.log'), '--profile', 'omap');
    expect(fresh.out).toMatch(/^page split: 2 map\(s\) where the kernel's 'mapping:' lines differ from omap's split/m);
  });

  it('a domain this import creates: the divergence and profile-check lines are as before', async () => {
    const db = tempDb();
    const r = await cli('--db', db, 'import', omapTrace(db), '--profile', 'intel-vtd', '--domain', 'fresh');
    expect(r.code).toBe(0);
    expect(r.out).not.toMatch(/existing domains/);
    expect(r.out).toMatch(/^divergences: 1 unmap\(s\) where the trace's unmapped_size differs from intel-vtd's prediction/m);
    expect(r.out).toMatch(/ — omap fits the trace better: try --profile omap \(or 'iommu-ledger replay --profile omap --out other\.db'\)$/m);
  });

  it('a destroyed --domain exits 2 saying so, naming the option and the file, and stores nothing', async () => {
    const db = await scenarioLedger();
    const before = events(db);
    const r = await cli('--db', db, 'import', omapTrace(db), '--domain', 'dsp');
    expect(r).toEqual({
      code: 2,
      out: '',
      err:
        'iommu-ledger: --domain "dsp": domain: "dsp" was destroyed, so it takes no more commands; nothing of ' +
        join(db, '..', 'o2.trace') +
        ' was stored (give another --domain)\n',
    });
    expect(events(db)).toBe(before);
  });

  it('an import opens spaces of its own: a name the ledger holds (even a destroyed domain) is not reused', async () => {
    const db = tempDb();
    const cmds = file(db, 'd.jsonl', '{"op":"domain","domain":"as1","profile":"omap"}\n{"op":"destroy","domain":"as1"}\n');
    expect((await cli('--db', db, 'apply', cmds)).code).toBe(0);
    const trace = omapTrace(db);
    const r = await cli('--db', db, 'import', trace);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^address spaces: 1 \(as2\)$/m);
    // A second trace gets its own space too.
    const other = file(db, 'o3.trace', `${readFileSync(trace, 'utf8')}# another capture\n`);
    expect((await cli('--db', db, 'import', other)).out).toMatch(/^address spaces: 1 \(as3\)$/m);
  });

  it('a last line cut inside the event name is malformed (FILE:LINE: reason), and --strict fails on it', async () => {
    const db = tempDb();
    const text = [L('1302.445180', 'map: IOMMU: iova=0x0000000060000000 paddr=0x0000000087400000 size=1048576'), L('1303.120310', 'unm')].join('\n');
    const trace = file(db, 'cut.trace', text);
    const r = await cli('--db', db, 'import', trace, '--profile', 'omap');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toBe(`${trace}: 2 lines, 1 IOMMU records, 2 events stored; 0 other lines skipped`);
    expect(lines).toContain('malformed lines skipped: 1 (use --strict to fail instead)');
    expect(lines).toContain(`  ${trace}:2: ftrace: line ends inside the event name "unm" (truncated?): ${JSON.stringify(L('1303.120310', 'unm'))}`);
    const strict = await cli('--db', tempDb(), 'import', trace, '--profile', 'omap', '--strict');
    expect(strict).toEqual({
      code: 2,
      out: '',
      err: `iommu-ledger: ${trace}:2: ftrace: line ends inside the event name "unm" (truncated?): ${JSON.stringify(L('1303.120310', 'unm'))} (--strict: nothing of this import was stored)\n`,
    });
  });

  it('a last line without a newline that is another event is still skipped, also with --strict', async () => {
    const db = tempDb();
    const text = [
      L('1302.445180', 'map: IOMMU: iova=0x0000000060000000 paddr=0x0000000087400000 size=1048576'),
      '      queue0:src-611   [000] d...  1302.498803: sched_switch: prev_comm=queue0:src prev_pid=611 prev_prio=120 prev_state=S ==> next_comm=swap',
    ].join('\n');
    const r = await cli('--db', db, 'import', file(db, 'sched.trace', text), '--profile', 'omap', '--strict');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/: 2 lines, 1 IOMMU records, 2 events stored; 1 other lines skipped\n/);
  });

  it('counts the commands the domain refused (text and --json), as apply does', async () => {
    const db = tempDb();
    const text = [
      L('1302.445180', 'map: IOMMU: iova=0x0000000060000000 paddr=0x0000000087400000 size=4095'),
      L('1302.445181', 'map: IOMMU: iova=0x0000000060200000 paddr=0x0000000087400000 size=0'),
      L('1302.445182', 'map: IOMMU: iova=0x0000000160000000 paddr=0x0000000087400000 size=4096'),
      L('1302.445183', 'map: IOMMU: iova=0x0000000060400000 paddr=0x0000000087400000 size=4096'),
    ].join('\n');
    const trace = file(db, 'refused.trace', `${text}\n`);
    const r = await cli('--db', db, 'import', trace, '--profile', 'omap');
    expect(r.code).toBe(0);
    expect(r.out.split('\n')).toContain("refused: 3 command(s) refused by the domain (stored with their errno, as 'iommu-ledger history' shows)");
    const j = await cli('--db', tempDb(), '--json', 'import', trace, '--profile', 'omap');
    const s = JSON.parse(j.out) as { stored: number; rejected: number; report: string[] };
    expect([s.stored, s.rejected]).toEqual([5, 3]);
    expect(s.report).toContain("refused: 3 command(s) refused by the domain (stored with their errno, as 'iommu-ledger history' shows)");
    const ok = await cli('--db', tempDb(), '--json', 'import', omapTrace(db), '--profile', 'omap');
    expect((JSON.parse(ok.out) as { rejected: number }).rejected).toBe(0);
    expect(ok.out).not.toMatch(/refused:/);
  });

  it('--domain with an explicit --domain-by (dev or infer) exits 2 and stores nothing', async () => {
    const db = await scenarioLedger();
    const before = events(db);
    for (const how of ['dev', 'infer']) {
      const r = await cli('--db', db, 'import', omapTrace(db), '--domain', 'gpu9', '--domain-by', how);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/option '--domain-by <how>' cannot be used with option '--domain <name>'/);
    }
    expect(events(db)).toBe(before);
    // --domain alone (--domain-by left at its default) is fine.
    expect((await cli('--db', db, 'import', omapTrace(db), '--domain', 'gpu9')).code).toBe(0);
  });

  it('a dynamic-debug prefix gives the function as caller and FILE:LINE as site', async () => {
    const db = tempDb();
    const log = file(
      db,
      'dyn.log',
      [
        '[  612.004411] drivers/iommu/iommu.c:2450: iommu:iommu_map:2450: map: iova 0x7f000000 pa 0x00000003a1400000 size 0x200000',
        '[  613.118002] drivers/iommu/iommu.c:2500: iommu:iommu_unmap:2500: unmap this: iova 0x7f000000 size 0x200000',
        '[  613.118010] drivers/iommu/iommu.c:2510: iommu:__iommu_unmap:2510: unmapped: iova 0x7f000000 size 0x200000',
        '[  614.000001] iommu: map: iova 0x7f400000 pa 0x00000003a1400000 size 0x1000',
        '',
      ].join('\n'),
    );
    expect((await cli('--db', db, 'import', log, '--profile', 'intel-vtd')).code).toBe(0);
    const raw = new Database(db, { readonly: true });
    const rows = raw.prepare("SELECT type, data FROM stored_events WHERE type IN ('map', 'unmap') ORDER BY position").all() as Array<{
      type: string;
      data: string;
    }>;
    raw.close();
    const who = rows.map((r) => {
      const w = (JSON.parse(r.data) as { who?: { caller?: string; site?: string } }).who ?? {};
      return [r.type, w.caller, w.site];
    });
    expect(who).toEqual([
      ['map', 'iommu_map', 'drivers/iommu/iommu.c:2450'],
      ['unmap', 'iommu_unmap', 'drivers/iommu/iommu.c:2500'],
      ['map', 'iommu', undefined],
    ]);
  });

  it('--domain with a space and a --caller over 200 characters are refused up front (exit 2), nothing stored', async () => {
    const db = await scenarioLedger();
    const before = events(db);
    const trace = omapTrace(db);
    const d = await cli('--db', db, 'import', trace, '--domain', 'my dom');
    expect([d.code, d.err]).toEqual([2, 'iommu-ledger: --domain "my dom": a domain name has 1 to 200 characters and no spaces\n']);
    const c = await cli('--db', db, 'import', trace, '--caller', 'c'.repeat(201));
    expect([c.code, c.err]).toEqual([2, 'iommu-ledger: --caller: a caller name has 1 to 200 characters\n']);
    expect(events(db)).toBe(before);
  });

  it('two processes importing the same trace at once store it once, in one address space, and the later one says it was imported already', async () => {
    const db = tempDb();
    const trace = file(db, 'same.trace', pairsTrace(3000, 512));
    const child = () =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const p = spawn(VITE_NODE, [BIN, '--db', db, 'import', trace, '--profile', 'intel-vtd'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.on('data', (d) => (out += String(d)));
        p.stderr.on('data', (d) => (out += String(d)));
        p.on('close', (code) => resolve({ code, out }));
      });
    const [a, b] = await Promise.all([child(), child()]);
    expect([a.code, b.code], a.out + b.out).toEqual([0, 0]);
    expect(events(db)).toBe(3001); // the domain and every record, once
    const raw = new Database(db, { readonly: true });
    expect(raw.prepare('SELECT name FROM streams').pluck().all()).toEqual(['as1']);
    raw.close();
    expect([a.out, b.out].filter((o) => /already imported into/.test(o))).toHaveLength(1);
  }, 60_000);

  it('--follow stops with a message (exit 2) when the followed file shrinks, keeping what it stored', async () => {
    const db = tempDb();
    const trace = file(db, 'grow.trace', pairsTrace(400, 64));
    const following = cli('--db', db, 'import', trace, '--follow', '--profile', 'intel-vtd');
    await waitForEvents(db, 401);
    writeFileSync(trace, pairsTrace(99, 64)); // the first 100 lines
    const r = await following;
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      /grow\.trace shrank from \d+ to \d+ bytes while it was followed \(truncated or rotated\): following stopped; the 401 event\(s\) stored so far stay \(lines 1-401\)/,
    );
    expect(events(db)).toBe(401);
  }, 30_000);

  it('an import killed after its first committed chunk is resumed by running it again: every line once, the source from its first event', async () => {
    const db = tempDb();
    const trace = file(db, 'long.trace', pairsTrace(60_000, 4096));
    const p = spawn(VITE_NODE, [BIN, '--db', db, 'import', trace, '--profile', 'intel-vtd'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((r) => p.on('close', r));
    await waitForEvents(db, 20_000);
    p.kill('SIGKILL');
    await exited;
    const stored = events(db);
    expect(stored).toBeLessThan(60_001); // the kill came before the last chunk
    const r = await cli('--db', db, 'import', trace, '--profile', 'intel-vtd');
    expect(r.code).toBe(0);
    // The whole trace ran through the pipeline again: what was stored (the domain too) is recognised by id.
    expect(r.out).toContain(`${60_001 - stored} events stored, ${stored} already in the ledger`);
    expect(events(db)).toBe(60_001);
    const raw = new Database(db, { readonly: true });
    expect(raw.prepare('SELECT count(DISTINCT event_id) FROM stored_events').pluck().get()).toBe(60_001);
    expect(raw.prepare('SELECT first_position, last_position FROM sources').raw().get()).toEqual([1, 60_001]);
    raw.close();
    expect((await cli('--db', db, 'verify')).code).toBe(0);
  }, 120_000);

  it('a plain import that finishes a followed file records it, so the next plain import of the same bytes says it was imported already', async () => {
    const db = tempDb();
    const trace = file(db, 'followed.trace', pairsTrace(200, 64));
    const following = cli('--db', db, 'import', trace, '--follow', '--profile', 'intel-vtd');
    await waitForEvents(db, 201);
    process.emit('SIGINT');
    expect((await following).code).toBe(0);
    const first = await cli('--db', db, 'import', trace, '--profile', 'intel-vtd');
    expect(first.out).toMatch(/continues an earlier --follow import of this file/);
    expect(first.out).toMatch(/0 events stored, 201 already in the ledger/);
    const second = await cli('--db', db, 'import', trace, '--profile', 'intel-vtd');
    expect(second.out).toMatch(/already imported into/);
    expect(events(db)).toBe(201);
  }, 30_000);

  it('a resumed import drops the tracepoint copy of a stored debug line again (it stored it as a second map)', async () => {
    const db = tempDb();
    const log = join(EX, 'dmesg-debug.log');
    expect((await cli('--db', db, 'import', log, '--profile', 'omap')).code).toBe(0);
    const stored = events(db);
    // Without its sources row the file is read again as a resumed import: every line by id.
    const raw = new Database(db);
    raw.prepare('DELETE FROM sources').run();
    raw.close();
    const again = await cli('--db', db, 'import', log, '--profile', 'omap');
    expect(again.out).toMatch(/0 events stored, \d+ already in the ledger/);
    expect(events(db)).toBe(stored);
  });
});
