/**
 * Smaller silent acceptances (issue 14 item 9): input that is accepted as documented, or refused
 * with a one-line message and exit 2, and never half-written output.
 * - a UTF-8 BOM before the first record of a trace (default and --strict) and of an apply file;
 * - a garbled prefix before a complete record: malformed, not "other event";
 * - duplicate JSON keys in `apply`;
 * - a foreign SQLite file: refused and left exactly as it was (no switch to WAL);
 * - a migrate script that calls process.exit(0): no --out, and no exit 0;
 * - a killed replay: no --out left behind to block the rerun.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { cli, EX } from '../cli/helpers.js';
import { tempDb } from '../ledger/helpers.js';

const ROOT = join(__dirname, '..', '..');
const BIN = join(ROOT, 'src', 'cli', 'bin.ts');
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
/** The record lines of the VFIO example (its header dropped), so that line 1 is a record. */
const RECORDS = readFileSync(join(EX, 'vfio-intel.trace'), 'utf8')
  .split('\n')
  .filter((l) => l !== '' && !l.startsWith('#'));

interface ImportJson {
  lines: number;
  records: number;
  stored: number;
  skipped: number;
  malformed: number;
  malformedExamples: string[];
}

async function importJson(db: string, file: string, ...more: string[]): Promise<{ code: number; s?: ImportJson; err: string }> {
  const r = await cli('--db', db, '--json', 'import', file, '--profile', 'intel-vtd', ...more);
  return { code: r.code, err: r.err, ...(r.code === 0 ? { s: JSON.parse(r.out) as ImportJson } : {}) };
}

/** Every stored event's type, stream and body, in order. */
function bodies(db: string): unknown[] {
  const d = new Database(db, { readonly: true });
  try {
    return (
      d.prepare('SELECT e.type, s.name, e.data FROM stored_events e JOIN streams s ON s.id = e.stream ORDER BY position').all() as Array<{
        type: string;
        name: string;
        data: string;
      }>
    ).map((r) => [r.type, r.name, (JSON.parse(r.data) as { body: unknown }).body]);
  } finally {
    d.close();
  }
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

describe('input that is accepted, and input that is refused', () => {
  it('a UTF-8 BOM before the first record keeps that record, with and without --strict', async () => {
    const plain = tempDb();
    const plainTrace = join(dirname(plain), 'plain.trace');
    writeFileSync(plainTrace, `${RECORDS.join('\n')}\n`);
    const p = await importJson(plain, plainTrace);
    expect(p.code, p.err).toBe(0);
    expect(RECORDS[0]).toMatch(/add_device_to_group: IOMMU: groupID=14/);

    for (const strict of [[], ['--strict']]) {
      const db = tempDb();
      const trace = join(dirname(db), 'bom.trace');
      writeFileSync(trace, Buffer.concat([BOM, Buffer.from(`${RECORDS.join('\n')}\n`)]));
      const r = await importJson(db, trace, ...strict);
      expect(r.code, r.err).toBe(0);
      expect(r.s).toMatchObject({ lines: p.s!.lines, records: p.s!.records, stored: p.s!.stored, skipped: p.s!.skipped, malformed: 0 });
      expect(bodies(db)).toEqual(bodies(plain));
    }
  });

  it('a garbled prefix before a complete record is malformed (shown, and refused under --strict), not skipped as another event', async () => {
    const db = tempDb();
    const trace = join(dirname(db), 'garbled.trace');
    // A line cut inside its event name, then a whole map record on the same line.
    const garbled = `  kworker/1:1-88   [001] .....  8114.000001: ma${RECORDS[2]}`;
    const at = garbled.indexOf(' map: IOMMU:') + 2;
    writeFileSync(trace, `${[RECORDS[0], RECORDS[1], garbled, ...RECORDS.slice(3)].join('\n')}\n`);
    const r = await importJson(db, trace);
    expect(r.code, r.err).toBe(0);
    expect(r.s!.malformed).toBe(1);
    const reason = `an IOMMU event (map) at column ${at} follows text that is not an IOMMU record (\"  kworker/1:1-88   [001] .....  8114.000001: ma ...\"): two lines run together, or a damaged line start; not stored`;
    expect(r.s!.malformedExamples).toEqual([expect.stringContaining(`garbled.trace:3: ${reason}`)]);
    const text = await cli('--db', tempDb(), 'import', trace, '--profile', 'intel-vtd');
    expect(text.out).toMatch(/\nmalformed lines skipped: 1 \(use --strict to fail instead\)\n {2}\S*garbled\.trace:3: an IOMMU event \(map\) at column /);

    const strict = await importJson(tempDb(), trace, '--strict');
    expect(strict.code).toBe(2);
    expect(strict.err).toMatch(
      new RegExp(
        `^iommu-ledger: .*garbled\\.trace:3: an IOMMU event \\(map\\) at column ${at} follows text .* \\(--strict: nothing of this import was stored\\)\\n$`,
      ),
    );
  });

  it('apply refuses a duplicate JSON key with the line and the key (exit 2, nothing stored); accepts a BOM', async () => {
    const db = tempDb();
    const file = join(dirname(db), 'dup.jsonl');
    writeFileSync(
      file,
      [
        '{"op":"domain","domain":"d","profile":"intel-vtd"}',
        '{"op":"map","domain":"d","iova":"0x1000","paddr":"0x1000","size":"4K"}',
        '{"op":"map","domain":"d","iova":"0x2000","paddr":"0x2000","size":"4K","who":{"caller":"a","caller":"b"}}',
      ].join('\n'),
    );
    const r = await cli('--db', db, 'apply', file);
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      `iommu-ledger: ${file}:3: key "caller" is written twice in $.who (JSON would keep only the last value): write each key once; nothing was stored\n`,
    );
    expect(existsSync(db)).toBe(false); // the new ledger of a failed first apply is removed
    // A key spelled with an escape is the same key.
    writeFileSync(file, '{"op":"domain","domain":"d","profile":"intel-vtd","dom\\u0061in":"e"}\n');
    expect((await cli('--db', db, 'apply', file)).err).toBe(
      `iommu-ledger: ${file}:1: key "domain" is written twice in $ (JSON would keep only the last value): write each key once; nothing was stored\n`,
    );

    writeFileSync(
      file,
      Buffer.concat([
        BOM,
        Buffer.from('{"op":"domain","domain":"d","profile":"intel-vtd"}\n{"op":"map","domain":"d","iova":"0x1000","paddr":"0x1000","size":"4K"}\n'),
      ]),
    );
    const bom = await cli('--db', db, 'apply', file);
    expect(bom.code, bom.err).toBe(0);
    expect(bom.out).toMatch(/: 2 commands, 2 stored,/);
  });

  it('a foreign SQLite file is refused (exit 2) and left exactly as it was: same bytes, same journal mode, no -wal', async () => {
    const db = tempDb('other.db');
    const o = new Database(db);
    o.pragma('journal_mode = DELETE');
    o.exec("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('keep me')");
    o.close();
    const before = sha(db);
    const msg = `iommu-ledger: ${db} is an SQLite file but not an iommu-ledger ledger (it has 1 table(s) and no ledger schema): it was left unchanged; give --db a ledger file, or a new path\n`;
    for (const argv of [['state'], ['verify'], ['checkpoint'], ['apply', join(EX, 'scenario.jsonl')], ['import', join(EX, 'vfio-intel.trace')], ['rebuild']]) {
      const r = await cli('--db', db, ...argv);
      expect(r, argv.join(' ')).toMatchObject({ code: 2, err: msg });
    }
    expect(sha(db)).toBe(before);
    expect(existsSync(`${db}-wal`)).toBe(false);
    expect(existsSync(`${db}-shm`)).toBe(false);
    const d = new Database(db, { readonly: true });
    expect(d.pragma('journal_mode', { simple: true })).toBe('delete');
    expect(d.prepare('SELECT x FROM notes').pluck().all()).toEqual(['keep me']);
    d.close();
  });

  it('a migrate script that calls process.exit(0) leaves no --out and does not exit 0, whether it exits as it loads, in a transform, or catches what the exit threw', async () => {
    const db = tempDb();
    const dir = dirname(db);
    expect((await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'))).code).toBe(0);
    const scripts: Record<string, string> = {
      'in-transform.mjs': "export default { name: 'exits', rules: [{ strategy: () => { process.exit(0); } }] };\n",
      'at-load.mjs': "process.exit(0);\nexport default { name: 'exits', rules: [{ strategy: 'keep' }] };\n",
      'caught.mjs': "export default { name: 'exits', rules: [{ strategy: (cmd) => { try { process.exit(0); } catch {} return [cmd]; } }] };\n",
    };
    for (const [name, code] of Object.entries(scripts)) {
      const script = join(dir, name);
      writeFileSync(script, code);
      const out = join(dir, `${name}.db`);
      const r = await cli('--db', db, 'migrate', '--script', script, '--out', out);
      expect(r, name).toMatchObject({
        code: 2,
        err: `iommu-ledger: --script ${script} called process.exit(0) during the migration: nothing was written to ${out}; a migration script returns commands and must not end the process\n`,
      });
      expect(existsSync(out), name).toBe(false);
    }
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.includes('.tmp-'))).toEqual([]);
    // process.exit works again afterwards (the trap is removed).
    expect(process.exit).not.toBe(undefined);

    // In a real process: the process's own exit code is not 0, and nothing is left.
    const out = join(dir, 'child.db');
    const p = spawn(process.execPath, ['--import', 'tsx', BIN, '--db', db, 'migrate', '--script', join(dir, 'in-transform.mjs'), '--out', out], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => p.on('close', r));
    expect(code, err).toBe(2);
    expect(err).toMatch(/called process\.exit\(0\) during the migration: nothing was written to /);
    expect(existsSync(out)).toBe(false);
    // And a migration that works still writes its --out.
    const ok = await cli('--db', db, 'migrate', '--strategy', 'keep', '--out', join(dir, 'kept.db'));
    expect(ok.code, ok.err).toBe(0);
    expect((await cli('--db', join(dir, 'kept.db'), 'verify')).code).toBe(0);
  });

  it('a killed replay leaves no --out: the rerun is not blocked by "exists", and its ledger verifies', async () => {
    const db = tempDb();
    const dir = dirname(db);
    const file = join(dir, 'big.jsonl');
    const lines = [JSON.stringify({ op: 'domain', domain: 'd', profile: 'intel-vtd' })];
    for (let i = 0; i < 20_000; i++) {
      const iova = `0x${(0x100000 + i * 0x1000).toString(16)}`;
      lines.push(JSON.stringify({ op: 'map', domain: 'd', iova, paddr: '0x1000', size: '4K' }), JSON.stringify({ op: 'unmap', domain: 'd', iova, size: '4K' }));
    }
    writeFileSync(file, lines.join('\n'));
    expect((await cli('--db', db, 'apply', file)).code).toBe(0);
    const out = join(dir, 'strict.db');
    const temporary = () => readdirSync(dir).filter((f) => f.startsWith('.strict.db.') && f.endsWith('.tmp'));

    const p = spawn(process.execPath, ['--import', 'tsx', BIN, '--db', db, 'replay', '--semantics', 'strict', '--out', out], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const closed = new Promise((r) => p.on('close', r));
    try {
      for (let t = 0; temporary().length === 0; t += 5) {
        if (t > 60_000 || p.exitCode !== null) throw new Error(`the replay wrote no temporary file (exit ${p.exitCode}): ${err}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setTimeout(r, 100));
      expect(p.exitCode).toBe(null); // still replaying when killed
    } finally {
      p.kill('SIGKILL');
      await closed;
    }
    expect(existsSync(out)).toBe(false);
    expect(temporary().length).toBeGreaterThan(0); // what a kill leaves: a hidden temporary file

    const again = await cli('--db', db, 'replay', '--semantics', 'strict', '--out', out);
    expect(again.code, again.err).toBe(0);
    expect(again.out).toMatch(/^replayed 40001 events of /);
    const v = await cli('--db', out, 'verify');
    expect(v.code).toBe(0);
    expect(v.out).toMatch(/^intact: 40001 events/);
  }, 120_000);
});
