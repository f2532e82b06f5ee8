/**
 * Corrupt projections (issue 14 item 6), made the way the issue found them: the blobs of
 * `run_log`, `run_snapshots` and `intent_snapshots` replaced by garbage, emptied, cut short or
 * given a huge count, entries with impossible values, bad `hw_state` JSON, and projection tables
 * or indexes dropped. Each is written straight into the file with better-sqlite3.
 *
 * Every command that reads one says which projection it could not read and that `rebuild`
 * recomputes it, in one line, with exit 1 (never 70); a valid `apply` never blames its input file;
 * nothing is stored by the failed command; and `rebuild` repairs every case.
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { Ledger, PROJECTION_NAMES } from '../../src/projections/ledger.js';
import { cli } from '../cli/helpers.js';
import { tempDb } from '../ledger/helpers.js';
import { eventCount, scenarioCopy, withRaw } from './tamper-helpers.js';
import { PROJECTION_TABLES } from '../../src/projections/corrupt.js';

const REPAIR =
  "the projection was damaged or changed outside iommu-ledger; the events are not affected: 'iommu-ledger rebuild' recomputes the projections from them";

let small: string | undefined;
/**
 * The scenario ledger rebuilt with a snapshot every 2 events of a domain, so that it holds run
 * snapshots and intent snapshots (gpu0: snapshots at events 2, 4, 6, 8, 10; its intent snapshot at
 * 10; run_log rows from events 3, 5, 8, 9).
 */
async function snapshotted(): Promise<string> {
  if (!small) {
    const db = await scenarioCopy();
    const l = new Ledger(db, { snapshotEvery: 2 });
    l.rebuild();
    l.close();
    withRaw(db, (raw) => raw.pragma('wal_checkpoint(TRUNCATE)'));
    small = db;
  }
  const copy = tempDb();
  copyFileSync(small, copy);
  return copy;
}

/** Rewrites a blob column of the rows `where` selects (key columns given) with fn. */
function editBlobs(db: string, table: string, col: string, keys: string[], where: string, fn: (b: Buffer) => Buffer): void {
  withRaw(db, (raw: Database.Database) => {
    const rows = raw.prepare(`SELECT ${keys.join(', ')}, ${col} AS b FROM ${table} WHERE ${where}`).all() as Array<Record<string, unknown> & { b: Buffer }>;
    if (!rows.length) throw new Error(`no rows of ${table} where ${where}`);
    const up = raw.prepare(`UPDATE ${table} SET ${col} = ? WHERE ${keys.map((k) => `${k} = ?`).join(' AND ')}`);
    for (const r of rows) up.run(fn(Buffer.from(r.b)), ...keys.map((k) => r[k]));
  });
}

/** The ways a blob is damaged: replaced by garbage, emptied, cut in half, its count made huge, its first page count made NaN. */
const DAMAGE: Array<{ name: string; fn: (b: Buffer) => Buffer; reason: (b: Buffer) => string }> = [
  { name: 'garbage', fn: () => Buffer.from('garbage, not a blob of any format'), reason: () => 'not a blob of this format (tag 0x62726167)' },
  { name: 'empty', fn: () => Buffer.alloc(0), reason: () => 'a blob of 0 bytes is shorter than its 8-byte header' },
  { name: 'cut in half', fn: (b) => b.subarray(0, Math.floor(b.length / 2)), reason: () => '' },
  {
    name: 'a huge count',
    fn: (b) => {
      b.writeUInt32LE(0xffffffff, 4);
      return b;
    },
    reason: () => '',
  },
];

const ONE_MAP = '{"op":"map","domain":"gpu0","iova":"0x10000000","paddr":"0x90000000","size":"4K","caller":"t"}\n';

/** The cheaper repair a message names: the rebuild of the one projection that owns what is damaged. */
const alone = (projection: string) => ` (or 'iommu-ledger rebuild --projection ${projection}', this projection alone)`;

/** Runs a command and checks it names `what`, says `rebuild` repairs it, or `rebuild --projection` that projection alone, in one line, exit 1. */
async function expectUnreadable(db: string, argv: string[], what: string, projection: string): Promise<string> {
  const r = await cli('--db', db, ...argv);
  expect({ argv, code: r.code, out: r.out }).toEqual({ argv, code: 1, out: '' });
  expect(r.err.startsWith(`iommu-ledger: ${what} cannot be read (`)).toBe(true);
  expect(r.err.endsWith(`): ${REPAIR}${alone(projection)}\n`)).toBe(true);
  expect(r.err.split('\n')).toHaveLength(2);
  return r.err;
}

/** Runs the rebuild of one projection that an error message names (as a user would copy it), and checks it succeeds. */
async function repairAsTold(db: string, err: string): Promise<void> {
  const m = /'iommu-ledger rebuild --projection ([\w-]+)'/.exec(err);
  expect(m).not.toBeNull();
  const r = await cli('--db', db, 'rebuild', '--projection', m![1]!);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(
    /^rebuilt the projections? [\w, -]+ from \d+ events \(the others kept, brought to the head\); every stored outcome matches the core\n$/,
  );
}

/** A valid one-line apply: refused because of the projection (not of the file), nothing stored; after `rebuild` it is stored. */
async function applyRefusedThenRepaired(db: string, what: string, projection: string): Promise<void> {
  const file = join(db, '..', 'one.jsonl');
  writeFileSync(file, ONE_MAP);
  const n = eventCount(db);
  const err = await expectUnreadable(db, ['apply', file], what, projection);
  expect(err).not.toMatch(/one\.jsonl/);
  expect(eventCount(db)).toBe(n);
  await repairAsTold(db, err);
  const again = await cli('--db', db, 'apply', file);
  expect(again.code).toBe(0);
  expect(eventCount(db)).toBe(n + 1);
}

describe('corrupt run snapshots and run log pieces (issue 14 item 6)', () => {
  for (const d of DAMAGE) {
    it(`a run snapshot ${d.name}: state, state --hw, diff and apply name it; rebuild repairs it`, async () => {
      const db = await snapshotted();
      let original = Buffer.alloc(0);
      editBlobs(db, 'run_snapshots', 'data', ['domain', 'position'], "domain = (SELECT id FROM streams WHERE name = 'gpu0') AND position = 10", (b) => {
        original = Buffer.from(b);
        return d.fn(b);
      });
      const what = 'the snapshot of domain gpu0 at event #10 (run_snapshots)';
      for (const argv of [
        ['state', '--domain', 'gpu0'],
        ['state', '--domain', 'gpu0', '--hw'],
        ['--json', 'state', '--domain', 'gpu0', '--hw'],
        ['diff', '3', '12', '--domain', 'gpu0'],
      ]) {
        const err = await expectUnreadable(db, argv, what, 'runs');
        const reason = d.reason(original);
        if (reason) expect(err).toContain(`(${reason})`);
      }
      await applyRefusedThenRepaired(db, what, 'runs');
    });
  }

  it('every damage names the blob and its sizes: a cut blob and a huge count say how many bytes for how many entries', async () => {
    const db = await snapshotted();
    editBlobs(db, 'run_snapshots', 'data', ['domain', 'position'], 'domain = 1 AND position = 10', (b) => b.subarray(0, 40));
    expect(await expectUnreadable(db, ['state', '--domain', 'gpu0'], 'the snapshot of domain gpu0 at event #10 (run_snapshots)', 'runs')).toContain(
      '(40 bytes for 1 entries and 8 bytes of names)',
    );
    const db2 = await snapshotted();
    editBlobs(db2, 'run_snapshots', 'data', ['domain', 'position'], 'domain = 1 AND position = 10', (b) => {
      b.writeUInt32LE(0xffffffff, 4);
      return b;
    });
    expect(await expectUnreadable(db2, ['state', '--domain', 'gpu0'], 'the snapshot of domain gpu0 at event #10 (run_snapshots)', 'runs')).toContain(
      '(87 bytes for 4294967295 entries and 8 bytes of names)',
    );
  });

  it('entries with impossible values (a NaN page count, a page shift of 200, a caller index past the names) are refused, not printed', async () => {
    const cases: Array<{ at: (n: number) => number; write: (b: Buffer, o: number) => void; reason: string }> = [
      { at: (n) => 16 + n * 8 * 3, write: (b, o) => b.writeDoubleLE(NaN, o), reason: 'entry 1 of 1 has page count NaN' },
      { at: (n) => 16 + n * (7 * 8 + 4), write: (b, o) => b.writeUInt8(200, o), reason: 'entry 1 of 1 has page shift 200' },
      { at: (n) => 16 + n * 7 * 8, write: (b, o) => b.writeUInt32LE(9, o), reason: 'entry 1 of 1 has caller 9 of 1 names' },
    ];
    for (const c of cases) {
      const db = await snapshotted();
      editBlobs(db, 'run_snapshots', 'data', ['domain', 'position'], 'domain = 1 AND position = 10', (b) => {
        c.write(b, c.at(b.readUInt32LE(4)));
        return b;
      });
      for (const argv of [
        ['state', '--domain', 'gpu0'],
        ['state', '--domain', 'gpu0', '--hw'],
      ]) {
        expect(await expectUnreadable(db, argv, 'the snapshot of domain gpu0 at event #10 (run_snapshots)', 'runs')).toContain(`(${c.reason})`);
      }
      expect((await cli('--db', db, 'rebuild')).code).toBe(0);
      expect((await cli('--db', db, 'state', '--domain', 'gpu0', '--hw')).code).toBe(0);
    }
  });

  for (const d of DAMAGE) {
    for (const col of ['births', 'ends'] as const) {
      it(`a run log piece's ${col} ${d.name}: diff and state at an event it covers name it; rebuild repairs it`, async () => {
        const db = await snapshotted();
        editBlobs(db, 'run_log', col, ['domain', 'first_pos'], 'domain = 1 AND first_pos = 5', d.fn);
        const what = `the run log of domain gpu0 (run_log row from event #5, ${col})`;
        await expectUnreadable(db, ['state', '--domain', 'gpu0', '--at', '5'], what, 'runs');
        await repairAsTold(db, await expectUnreadable(db, ['diff', '4', '5', '--domain', 'gpu0'], what, 'runs'));
        expect((await cli('--db', db, 'diff', '4', '5', '--domain', 'gpu0')).code).toBe(0);
      });
    }
  }

  it('a run log piece merged by an apply (32 small pieces) is checked before it is trusted', async () => {
    const db = tempDb();
    const file = join(db, '..', 'many.jsonl');
    const lines = ['{"op":"domain","domain":"d","profile":"intel-vtd"}'];
    for (let i = 0; i < 20; i++) lines.push(`{"op":"map","domain":"d","iova":"${0x100000 + i * 0x1000}","paddr":"0x1000","size":"4K","caller":"c"}`);
    writeFileSync(file, `${lines.join('\n')}\n`);
    expect((await cli('--db', db, 'apply', file)).code).toBe(0);
    // Durable single appends write small pieces; damage the first, then append until they merge.
    editBlobs(db, 'run_log', 'births', ['domain', 'first_pos'], 'first_pos = (SELECT min(first_pos) FROM run_log)', () =>
      Buffer.from('garbage, not a blob of any format'),
    );
    let last: { code: number; err: string } = { code: 0, err: '' };
    for (let i = 0; i < 40 && last.code === 0; i++) {
      writeFileSync(file, `{"op":"map","domain":"d","iova":"${0x10000000 + i * 0x1000}","paddr":"0x1000","size":"4K","caller":"c"}\n`);
      last = await cli('--db', db, 'apply', file);
    }
    expect(last.code).toBe(1);
    expect(last.err).toMatch(/^iommu-ledger: the (run log|snapshot) of domain d .* cannot be read \(not a blob of this format \(tag 0x62726167\)\): /);
    expect((await cli('--db', db, 'rebuild')).code).toBe(0);
  });
});

describe('corrupt intent snapshots (issue 14 item 6)', () => {
  for (const d of DAMAGE) {
    it(`an intent snapshot ${d.name}: a valid one-line apply names it (not its input file), stores nothing; rebuild repairs it`, async () => {
      const db = await snapshotted();
      editBlobs(db, 'intent_snapshots', 'data', ['domain'], 'domain = 1', d.fn);
      await applyRefusedThenRepaired(db, 'the intent snapshot of domain gpu0 at event #10 (intent_snapshots)', 'intent');
    });
  }

  it('an intent snapshot whose caller list is not JSON, not a list, or too short for its entries', async () => {
    for (const [callers, reason] of [
      ['{', 'not valid JSON: '],
      ['{"a":1}', 'its callers are not a list of names'],
      ['[]', 'entry 1 of 2 has caller 0 of 0 names'],
    ] as const) {
      const db = await snapshotted();
      withRaw(db, (raw) => raw.prepare('UPDATE intent_snapshots SET callers = ? WHERE domain = 1').run(callers));
      const file = join(db, '..', 'one.jsonl');
      writeFileSync(file, ONE_MAP);
      const err = await expectUnreadable(db, ['apply', file], 'the intent snapshot of domain gpu0 at event #10 (intent_snapshots)', 'intent');
      expect(err).toContain(`(${reason}`);
    }
  });
});

describe('bad hw_state JSON (issue 14 item 6)', () => {
  for (const [stats, reason] of [
    ['not json', 'not valid JSON: '],
    ['null', 'not a JSON object'],
    ['{}', 'invalidations missing is not a count'],
    ['{"invalidations":-1,"invalidatedBytes":"0x0"}', 'invalidations -1 is not a count'],
    ['{"invalidations":1,"invalidatedBytes":"0xzz"}', 'invalidatedBytes "0xzz" is not a "0x" size'],
  ] as const) {
    it(`stats ${stats}: state --hw names the checkpoint and prints no half answer; state without --hw is unaffected; rebuild repairs it`, async () => {
      const db = await scenarioCopy();
      withRaw(db, (raw) =>
        raw.prepare("INSERT INTO hw_state (domain, position, stats) VALUES ((SELECT id FROM streams WHERE name = 'gpu0'), 3, ?)").run(stats),
      );
      const what = 'the hardware checkpoint of domain gpu0 at event #3 (hw_state)';
      expect(await expectUnreadable(db, ['state', '--domain', 'gpu0', '--hw'], what, 'hardware')).toContain(`(${reason}`);
      const err = await expectUnreadable(db, ['--json', 'state', '--domain', 'gpu0', '--hw'], what, 'hardware');
      expect(err).toContain(`(${reason}`);
      expect((await cli('--db', db, 'state', '--domain', 'gpu0')).code).toBe(0);
      await repairAsTold(db, err);
      expect((await cli('--db', db, 'state', '--domain', 'gpu0', '--hw')).code).toBe(0);
    });
  }
});

describe('projection tables and indexes dropped outside iommu-ledger (issue 14 item 6)', () => {
  it('after DROP TABLE faults: verify works; audit faults names the table (exit 1); rebuild recreates it with its rows', async () => {
    const db = await scenarioCopy();
    const before = (await cli('--db', db, '--json', 'audit', 'faults')).out;
    withRaw(db, (raw) => raw.exec('DROP TABLE faults'));
    const v = await cli('--db', db, 'verify');
    expect(v.code).toBe(0);
    expect(v.out).toMatch(/^intact: 17 events/);
    const a = await cli('--db', db, 'audit', 'faults');
    expect(a).toEqual({
      code: 1,
      out: '',
      err: `iommu-ledger: ${db}: the table faults is missing (part of the projections, not of the events): the events are not affected: 'iommu-ledger rebuild' recomputes the projections from them and recreates it${alone('faults')}\n`,
    });
    const r = await cli('--db', db, 'rebuild');
    expect(r).toEqual({ code: 0, out: 'rebuilt the projections from 17 events; every stored outcome matches the core\n', err: '' });
    expect((await cli('--db', db, '--json', 'audit', 'faults')).out).toBe(before);
  });

  it('after DROP TABLE unmap_findings: rebuild --projection findings rebuilds it with faults (which updates its rows) and leaves the other tables as they were', async () => {
    const db = await scenarioCopy();
    const before = (await cli('--db', db, '--json', 'audit', 'over-unmaps', '--all')).out;
    const kept = () => withRaw(db, (raw) => ['runs', 'intent', 'caller_symmetry', 'hw_state'].map((t) => raw.prepare(`SELECT * FROM ${t}`).all()));
    const others = kept();
    withRaw(db, (raw) => raw.exec('DROP TABLE unmap_findings'));
    expect((await cli('--db', db, 'audit', 'over-unmaps')).code).toBe(1);
    const r = await cli('--db', db, 'rebuild', '--projection', 'findings');
    expect(r).toEqual({
      code: 0,
      out: 'rebuilt the projections findings, faults from 17 events (the others kept, brought to the head); every stored outcome matches the core\n',
      err: '',
    });
    expect((await cli('--db', db, '--json', 'audit', 'over-unmaps', '--all')).out).toBe(before);
    expect(kept()).toEqual(others);
    const j = await cli('--db', db, '--json', 'rebuild', '--projection', 'hardware', 'runs');
    expect(JSON.parse(j.out)).toMatchObject({ events: 17, projections: ['runs', 'hardware'], mismatches: 0 });
  });

  it('rebuild --projection with a name that is not a projection: exit 2 naming the projections, nothing changed', async () => {
    const db = await scenarioCopy();
    const before = withRaw(db, (raw) => raw.prepare('SELECT * FROM unmap_findings').all());
    const r = await cli('--db', db, 'rebuild', '--projection', 'findings', 'run');
    expect(r).toEqual({
      code: 2,
      out: '',
      err: `iommu-ledger: --projection run: no such projection (the projections are ${PROJECTION_NAMES.join(', ')})\n`,
    });
    expect(withRaw(db, (raw) => raw.prepare('SELECT * FROM unmap_findings').all())).toEqual(before);
    // The help names the registry's projections.
    expect((await cli('rebuild', '--help')).out.replace(/\s+/g, ' ')).toContain(`(${PROJECTION_NAMES.join(', ')})`);
  });

  it('every projection table dropped at once: the questions name a missing table; rebuild recreates them all as the schema has them', async () => {
    const db = await scenarioCopy();
    const schema = () =>
      withRaw(db, (raw) => raw.prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all());
    const want = schema();
    const answers = async () => [
      (await cli('--db', db, '--json', 'audit', 'over-unmaps', '--all')).out,
      (await cli('--db', db, '--json', 'callers')).out,
      (await cli('--db', db, '--json', 'explain', '0x201000', '--domain', 'gpu0')).out,
    ];
    const before = await answers();
    withRaw(db, (raw) => {
      for (const t of PROJECTION_TABLES) raw.exec(`DROP TABLE ${t}`);
    });
    expect((await cli('--db', db, 'verify')).code).toBe(0);
    for (const argv of [['state', '--domain', 'gpu0'], ['explain', '0x201000', '--domain', 'gpu0'], ['callers']]) {
      const r = await cli('--db', db, ...argv);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(
        /^iommu-ledger: .*: the table \w+ is missing \(part of the projections, not of the events\): .*'iommu-ledger rebuild' .* recreates it( \(or 'iommu-ledger rebuild --projection [\w-]+', this projection alone\))?\n$/,
      );
    }
    expect((await cli('--db', db, 'rebuild')).code).toBe(0);
    expect(schema()).toEqual(want);
    expect(await answers()).toEqual(before);
  });

  it('after DROP INDEX unmap_findings_reach: explain names the index (exit 1); rebuild recreates it', async () => {
    const db = await scenarioCopy();
    withRaw(db, (raw) => raw.exec('DROP INDEX unmap_findings_reach'));
    const e = await cli('--db', db, 'explain', '0x201000', '--domain', 'gpu0');
    expect(e.code).toBe(1);
    expect(e.err).toBe(
      `iommu-ledger: ${db}: the index unmap_findings_reach is missing (part of the projections, not of the events): the events are not affected: 'iommu-ledger rebuild' recomputes the projections from them and recreates it${alone('findings')}\n`,
    );
    expect((await cli('--db', db, 'rebuild')).code).toBe(0);
    expect((await cli('--db', db, 'explain', '0x201000', '--domain', 'gpu0')).code).toBe(0);
  });

  it('a rebuild that fails (a tampered event) after a table was dropped leaves the file as it was', async () => {
    const db = await scenarioCopy();
    withRaw(db, (raw) => raw.exec('DROP TABLE faults'));
    withRaw(db, (raw) => {
      raw.exec('DROP TRIGGER events_no_update');
      raw.prepare('UPDATE events SET data = ? WHERE position = 6').run('{"body":null}');
    });
    const r = await cli('--db', db, 'rebuild', '--accept-broken-chain');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^iommu-ledger: event #6 \(id [^)]+\): body: expected an object, not null: /);
    expect(withRaw(db, (raw) => raw.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'faults'").pluck().get())).toBe(0);
  });
});

describe('a projection table reshaped outside iommu-ledger (issue 14 item 6)', () => {
  it('a column dropped from runs: verify works; history names the row and the column (exit 1); rebuild recreates the table as the schema has it', async () => {
    const db = await scenarioCopy();
    const before = (await cli('--db', db, '--json', 'history', '0x200000', '2M', '--domain', 'gpu0')).out;
    withRaw(db, (raw) => raw.exec('ALTER TABLE runs DROP COLUMN map_pos'));
    expect((await cli('--db', db, 'verify')).code).toBe(0);
    const h = await cli('--db', db, 'history', '0x200000', '2M', '--domain', 'gpu0');
    expect(h.code).toBe(1);
    expect(h.err).toBe(`iommu-ledger: a row of the runs table (id 1) cannot be read (map_pos is missing): ${REPAIR}${alone('runs')}\n`);
    await repairAsTold(db, h.err);
    expect((await cli('--db', db, '--json', 'history', '0x200000', '2M', '--domain', 'gpu0')).out).toBe(before);
  });
});

describe('corrupt JSON in the finding and caller projections (issue 14 item 6)', () => {
  it('unmap_findings.detail, faults.detail and asymmetric_unmaps.maps that are not JSON: audit and callers name them (exit 1); rebuild repairs them', async () => {
    const db = await scenarioCopy();
    withRaw(db, (raw) => {
      raw.prepare("UPDATE unmap_findings SET detail = '{' WHERE position = 6").run();
      raw.prepare("UPDATE faults SET detail = 'nope' WHERE position = 7").run();
      raw.prepare("UPDATE asymmetric_unmaps SET maps = '[{' WHERE position = 6").run();
    });
    const f = await cli('--db', db, 'audit', 'over-unmaps');
    expect(f.code).toBe(1);
    expect(f.err).toMatch(
      /^iommu-ledger: the finding at event #6 \(unmap_findings\.detail\) cannot be read \(not valid JSON: .*\): the projection was damaged/,
    );
    const a = await cli('--db', db, 'audit', 'faults');
    expect(a.code).toBe(1);
    expect(a.err).toMatch(/^iommu-ledger: the fault at event #7 \(faults\.detail\) cannot be read \(not valid JSON: /);
    const c = await cli('--db', db, 'callers');
    expect(c.code).toBe(1);
    expect(c.err).toMatch(/^iommu-ledger: the caller analysis \(caller_symmetry and asymmetric_unmaps\) cannot be read \(.+\): the projection was damaged/);
    for (const r of [f, a, c]) expect(r.err.split('\n')).toHaveLength(2);
    expect((await cli('--db', db, 'rebuild')).code).toBe(0);
    for (const argv of [['audit', 'over-unmaps'], ['audit', 'faults'], ['callers']]) expect((await cli('--db', db, ...argv)).code).toBe(0);
  });
});
