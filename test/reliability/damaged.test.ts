/**
 * A damaged ledger file (issue 14 item 4): cut short, or one 4 KiB page zeroed. `verify` reports
 * the damage (what can still be read, the first bad position) and exits 1; every other command
 * says the file is damaged and points to `verify` (exit 1), or answers when it never reads the
 * damaged page; none exits 70, and none changes the file.
 *
 * What can be read is foretold without SQLite: the events table's B-tree is walked from its root
 * page in the intact file (tests/reliability/damaged.test.ts `eventPaths`), which gives for each
 * event the pages a reader passes through; an event can be read when none of them was zeroed or
 * cut off. A corpus of random pages and cut points, made at test time, holds every command to
 * exit 0, 1 or 2 with a one-line message.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../cli/helpers.js';
import { tempDb } from '../ledger/helpers.js';
import { eventCount, mapCommands, mapTrace, withRead } from './io-helpers.js';

const PAGE = 4096;
const MALFORMED = 'SQLITE_CORRUPT: database disk image is malformed';
const RESTORE = "nothing was changed; restore the ledger from a copy (a copy whose 'verify' prints the same head hash holds the same events up to there)";

let ledger: string;
let total: number;
let bytes: Buffer;
let more: string;
/** For each event position, the pages from the events table's root to its leaf. */
let paths: Map<number, number[]>;
let hashAt: (position: number) => string;

/** A SQLite varint at `at`: [value, bytes used]. */
function varint(b: Buffer, at: number): [number, number] {
  let v = 0;
  for (let i = 0; i < 8; i++) {
    const x = b[at + i]!;
    v = v * 128 + (x & 0x7f);
    if (!(x & 0x80)) return [v, i + 1];
  }
  return [v * 256 + b[at + 8]!, 9];
}

/** Walks a table B-tree from `root` in the file's bytes: each row id with the pages on its way. */
function eventPaths(file: Buffer, root: number): Map<number, number[]> {
  const out = new Map<number, number[]>();
  const walk = (page: number, path: number[]): void => {
    const base = (page - 1) * PAGE;
    const head = page === 1 ? base + 100 : base;
    const type = file[head]!;
    const cells = file.readUInt16BE(head + 3);
    const here = [...path, page];
    if (type === 0x0d) {
      for (let i = 0; i < cells; i++) {
        const at = base + file.readUInt16BE(head + 8 + 2 * i);
        const [size, n] = varint(file, at);
        const [rowid] = varint(file, at + n);
        expect(size).toBeLessThan(PAGE - 35); // no overflow pages: the oracle ignores them
        out.set(rowid, here);
      }
      return;
    }
    expect(type).toBe(0x05);
    for (let i = 0; i < cells; i++) walk(file.readUInt32BE(base + file.readUInt16BE(head + 12 + 2 * i)), here);
    walk(file.readUInt32BE(head + 8), here);
  };
  walk(root, []);
  return out;
}

/** What the oracle says can be read of a file with these pages gone (zeroed, or past the end). */
function foretell(gone: (page: number) => boolean): { readable: number; firstBad?: number; later: Array<{ from: number; to: number }>; unreadable: number } {
  let readable = 0;
  let firstBad: number | undefined;
  const later: Array<{ from: number; to: number }> = [];
  let run: { from: number; to: number } | undefined;
  let unreadable = 0;
  for (let p = 1; p <= total; p++) {
    const ok = !paths.get(p)!.some(gone);
    if (firstBad === undefined) {
      if (ok) readable++;
      else {
        firstBad = p;
        unreadable++;
      }
      continue;
    }
    if (!ok) {
      unreadable++;
      run = undefined;
    } else if (run) run.to = p;
    else later.push((run = { from: p, to: p }));
  }
  return { readable, ...(firstBad !== undefined ? { firstBad } : {}), later, unreadable };
}

const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A copy of the ledger with `change` done to its bytes. */
function damaged(change: (b: Buffer) => Buffer): string {
  const db = tempDb();
  writeFileSync(db, change(Buffer.from(bytes)));
  return db;
}

const zeroPage = (page: number) => (b: Buffer) => b.fill(0, (page - 1) * PAGE, page * PAGE);
const cutAt = (length: number) => (b: Buffer) => b.subarray(0, length);

const elsewhere = (db: string, command: string, reason = MALFORMED) =>
  `iommu-ledger: ${db} is damaged (${reason}); '${command}' stopped and changed nothing; run 'iommu-ledger --db ${db} verify' to see what can still be read and where the damage starts, and restore the ledger from a copy\n`;

function runs(later: Array<{ from: number; to: number }>, max: number): string {
  const shown = later.slice(0, max).map((x) => (x.from === x.to ? `#${x.from}` : `#${x.from}..#${x.to}`));
  return shown.join(', ') + (later.length > max ? `, … (${later.length} runs)` : '');
}

/** The one line `verify` prints on stderr for damage in the events, given what the oracle says and the damaged tables. */
function verifyLine(db: string, f: ReturnType<typeof foretell>, objects: string[]): string {
  const readable = f.readable
    ? `events #1..#${f.readable} can be read and their hash chain is intact from the first event (head hash ${hashAt(f.readable)})`
    : 'no event can be read from the first on';
  const laterEvents = f.later.reduce((s, r) => s + r.to - r.from + 1, 0);
  const later = laterEvents ? `; ${laterEvents} later event(s) can still be read (${runs(f.later, 4)})` : '';
  return `iommu-ledger: ${db} is damaged: ${readable}; event #${f.firstBad} cannot be read (${MALFORMED})${later}; damaged: ${objects.join(', ')}; ${RESTORE}\n`;
}

interface Report {
  readable: number;
  firstBad?: number;
  later: Array<{ from: number; to: number }>;
  laterEvents: number;
  unreadable: number;
  end?: number;
  chain: string;
  head?: string;
  objects: Array<{ name: string; role: string; problem: string }>;
}

beforeAll(async () => {
  ledger = tempDb();
  const trace = join(ledger, '..', 'maps.trace');
  writeFileSync(trace, mapTrace(3000));
  const r = await cli('--db', ledger, 'import', trace, '--profile', 'intel-vtd');
  expect(r.code, r.err).toBe(0);
  expect(existsSync(`${ledger}-wal`)).toBe(false); // checkpointed into the file when closed
  total = eventCount(ledger);
  expect(total).toBe(4501);
  bytes = readFileSync(ledger);
  const root = withRead(ledger, (raw) => raw.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'events'").pluck().get() as number);
  paths = eventPaths(bytes, root);
  expect(paths.size).toBe(total);
  const hashes = withRead(ledger, (raw) => raw.prepare('SELECT position, lower(hex(hash)) FROM events').raw(true).all() as Array<[number, string]>);
  const byPos = new Map(hashes);
  hashAt = (p) => byPos.get(p)!;
  more = join(ledger, '..', 'more.jsonl');
  writeFileSync(more, mapCommands(3, 'more'));
}, 60_000);

/** Every command that reads the ledger, as a user would run it after the damage. */
const COMMANDS = (more: string): string[][] => [
  ['state', '--domain', 'as1'],
  ['audit', 'over-unmaps'],
  ['history', '0x1000', '--domain', 'as1'],
  ['explain', '0x1000', '--domain', 'as1'],
  ['callers'],
  ['rebuild'],
  ['apply', more],
];

describe('verify reports the damage, exit 1', () => {
  it('a ledger cut in half: the events before the cut, where reading stops, the end of the log; every other command: damaged, see verify', async () => {
    const cut = Math.floor(bytes.length / 2 / PAGE) * PAGE;
    const db = damaged(cutAt(cut));
    const f = foretell((p) => p > cut / PAGE);
    expect(f.readable).toBeGreaterThan(100);
    expect(f.firstBad).toBe(f.readable + 1);
    const j = await cli('--db', db, '--json', 'verify');
    expect(j.code).toBe(1);
    const rep = JSON.parse(j.out) as Report;
    expect(rep).toMatchObject({
      readable: f.readable,
      firstBad: f.firstBad,
      later: f.later,
      unreadable: f.unreadable,
      end: total,
      chain: 'intact',
      head: hashAt(f.readable),
    });
    const names = rep.objects.map((o) => o.name);
    expect(names).toContain('table events');
    expect(rep.objects.find((o) => o.name === 'table events')?.role).toBe('log');
    const v = await cli('--db', db, 'verify');
    expect(v.code).toBe(1);
    expect(v.err).toBe(verifyLine(db, f, names));
    expect(v.out.split('\n').slice(0, 4)).toEqual([
      `${db} is damaged:`,
      `  events: #1..#${f.readable} can be read (${f.readable} events); their hash chain is intact from the first event (head hash ${hashAt(f.readable)})`,
      `  first bad position: #${f.firstBad} (${MALFORMED})`,
      f.later.length
        ? `  after it: ${rep.laterEvents} event(s) can still be read, ${runs(f.later, 12)}; ${f.unreadable} position(s) cannot; the log ends at #${total}`
        : `  after it: no event can be read; the log ends at #${total}`,
    ]);
    // SQLite refuses a file shorter than its header says before any table is read: every command.
    const before = sha(db);
    for (const argv of [...COMMANDS(more), ['checkpoint']]) {
      expect(await cli('--db', db, ...argv), argv.join(' ')).toEqual({ code: 1, out: '', err: elsewhere(db, argv[0]!) });
    }
    expect(sha(db)).toBe(before);
  }, 60_000);

  it('one zeroed 4 KiB page of events: the events before it, the first bad position, the events after it that still read', async () => {
    const leaves = [...new Set([...paths.values()].map((p) => p[p.length - 1]!))];
    const leaf = leaves[Math.floor(leaves.length / 2)]!;
    const db = damaged(zeroPage(leaf));
    const f = foretell((p) => p === leaf);
    const onLeaf = [...paths].filter(([, p]) => p.includes(leaf)).map(([pos]) => pos);
    expect(f).toEqual({
      readable: onLeaf[0]! - 1,
      firstBad: onLeaf[0]!,
      later: [{ from: onLeaf[onLeaf.length - 1]! + 1, to: total }],
      unreadable: onLeaf.length,
    });
    const v = await cli('--db', db, 'verify');
    expect(v.code).toBe(1);
    expect(v.err).toBe(verifyLine(db, f, ['table events']));
    expect(v.out).toBe(
      [
        `${db} is damaged:`,
        `  events: #1..#${f.readable} can be read (${f.readable} events); their hash chain is intact from the first event (head hash ${hashAt(f.readable)})`,
        `  first bad position: #${f.firstBad} (${MALFORMED})`,
        `  after it: ${total - onLeaf[onLeaf.length - 1]!} event(s) can still be read, #${onLeaf[onLeaf.length - 1]! + 1}..#${total}; ${onLeaf.length} position(s) cannot; the log ends at #${total}`,
        '  damaged tables and indexes:',
        `    table events (the log): ${MALFORMED} (in the table or one of its indexes)`,
        `  ${RESTORE}`,
        '',
      ].join('\n'),
    );
    // rebuild reads every event: it stops and changes nothing.
    const before = sha(db);
    expect(await cli('--db', db, 'rebuild')).toEqual({ code: 1, out: '', err: elsewhere(db, 'rebuild') });
    expect(await cli('--db', db, 'checkpoint')).toEqual({ code: 1, out: '', err: elsewhere(db, 'checkpoint') });
    expect(sha(db)).toBe(before);
  }, 60_000);

  it('a zeroed root page of the events B-tree (an interior page): no event can be read, and verify says so', async () => {
    const root = paths.get(1)![0]!;
    expect(paths.get(total)![0]).toBe(root);
    const db = damaged(zeroPage(root));
    const f = foretell((p) => p === root);
    expect(f).toEqual({ readable: 0, firstBad: 1, later: [], unreadable: total });
    const v = await cli('--db', db, '--json', 'verify');
    expect(v.code).toBe(1);
    expect(JSON.parse(v.out)).toMatchObject({ readable: 0, firstBad: 1, later: [], laterEvents: 0, unreadable: total, end: total });
    expect(v.err).toBe(verifyLine(db, f, ['table events']));
    const t = await cli('--db', db, 'verify');
    expect(t.out.split('\n').slice(0, 4)).toEqual([
      `${db} is damaged:`,
      '  events: none can be read from the first on',
      `  first bad position: #1 (${MALFORMED})`,
      `  after it: no event can be read; the log ends at #${total}`,
    ]);
  });

  it('a zeroed page of a projection: all events read and verify, and the damaged table is named; rebuild cannot write over it (exit 1)', async () => {
    const leaf = withRead(
      ledger,
      (raw) => raw.prepare("SELECT pageno FROM dbstat WHERE name = 'runs' AND pagetype = 'leaf' ORDER BY path LIMIT 1 OFFSET 3").pluck().get() as number,
    );
    const db = damaged(zeroPage(leaf));
    const v = await cli('--db', db, 'verify');
    expect(v.code).toBe(1);
    expect(v.err).toBe(
      `iommu-ledger: ${db} is damaged: all ${total} events can be read and their hash chain is intact from the first event (head hash ${hashAt(total)}); damaged: table runs; ${RESTORE}\n`,
    );
    expect(v.out).toContain(`    table runs (a projection): ${MALFORMED} (in the table or one of its indexes)\n`);
    const before = sha(db);
    expect(await cli('--db', db, 'rebuild')).toEqual({ code: 1, out: '', err: elsewhere(db, 'rebuild') });
    expect(sha(db)).toBe(before);
  });

  it('a zeroed first page (the header and the list of tables): nothing can be read; every command says the file is damaged', async () => {
    const db = damaged(zeroPage(1));
    const notadb = 'SQLITE_NOTADB: file is not a database';
    const v = await cli('--db', db, 'verify');
    expect(v).toEqual({
      code: 1,
      out: `${db} is damaged:\n  first page: cannot be read (${notadb}); no table, and so no event, can be read\n  ${RESTORE}\n`,
      err: `iommu-ledger: ${db} is damaged: its first page (SQLite's header and the list of tables) cannot be read (${notadb}), so no event can be read; ${RESTORE}\n`,
    });
    const before = sha(db);
    for (const argv of COMMANDS(more))
      expect(await cli('--db', db, ...argv), argv.join(' ')).toEqual({ code: 1, out: '', err: elsewhere(db, argv[0]!, notadb) });
    expect(sha(db)).toBe(before);
  }, 60_000);

  it('an intact ledger still verifies (exit 0): the check of every page finds nothing', async () => {
    const db = tempDb();
    copyFileSync(ledger, db);
    const v = await cli('--db', db, 'verify');
    expect(v).toMatchObject({ code: 0, err: '' });
    expect(v.out).toMatch(new RegExp(`^intact: ${total} events, `));
  });
});

describe('a corpus of damage, made at test time: no command exits 70, every refusal is one line', () => {
  const pages = () => Math.floor(bytes.length / PAGE);
  const oneLine = (s: string) => s === '' || (s.endsWith('\n') && s.indexOf('\n') === s.length - 1 && s.startsWith('iommu-ledger: '));

  it('a zeroed page anywhere, a cut anywhere: verify exits 1 when an event cannot be read (0 only when every page it checks is whole), the others 0, 1 or 2', async () => {
    const damage = fc.oneof(
      fc.integer({ min: 2, max: 10_000 }).map((k) => ({ kind: 'zero' as const, page: 2 + (k % (pages() - 1)) })),
      fc.integer({ min: 0, max: 1_000_000 }).map((k) => ({ kind: 'cut' as const, length: k % bytes.length })),
    );
    await fc.assert(
      fc.asyncProperty(damage, async (d) => {
        const db = damaged(d.kind === 'zero' ? zeroPage(d.page) : cutAt(d.length));
        const v = await cli('--db', db, 'verify');
        expect([0, 1, 2], v.err).toContain(v.code);
        expect(oneLine(v.err), v.err).toBe(true);
        const gone = d.kind === 'zero' ? (p: number) => p === d.page : (p: number) => p > Math.floor(d.length / PAGE);
        const f = foretell(gone);
        // An event that cannot be read is always reported (a cut inside the first 16 bytes leaves no SQLite file at all: exit 2).
        if (f.firstBad !== undefined) expect(v.code).toBe(d.kind === 'cut' && d.length < 16 ? 2 : 1);
        if (v.code === 0) expect(d.kind).toBe('zero');
        for (const argv of COMMANDS(more)) {
          const r = await cli('--db', db, ...argv);
          expect([0, 1, 2], `${argv.join(' ')}: ${r.err}`).toContain(r.code);
          expect(oneLine(r.err), r.err).toBe(true);
          if (r.code === 1) expect(r.err).toMatch(/ is damaged \(/);
        }
      }),
      { numRuns: 40, seed: 14 },
    );
  }, 240_000);

  it('a truncation to a few bytes is no SQLite file at all: exit 2, not a ledger', async () => {
    const db = damaged(cutAt(10));
    truncateSync(db, 10);
    expect(await cli('--db', db, 'verify')).toEqual({ code: 2, out: '', err: `iommu-ledger: ${db} is not an iommu-ledger ledger: file is not a database\n` });
  });
});
