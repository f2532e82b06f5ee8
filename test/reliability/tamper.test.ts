/**
 * Tampered events (issue 14 items 5 and 7), reproduced the way an attacker with write access to
 * the file does it: SQL through better-sqlite3, and, for the hostile bodies, the hash chain
 * recomputed afterwards so that `verify` still says intact.
 *
 * - `rebuild` verifies the chain first and refuses a broken one (exit 1, nothing changed) unless
 *   `--accept-broken-chain`;
 * - a stored event that does not fit the schema of stored events (a body that is null, an array, a
 *   string, an address "0xzz" or "-0x1000", nested 100,000 deep, an unknown field or event type)
 *   makes rebuild, replay, migrate and the questions stop with one line naming the event
 *   (position and id), exit 1: never exit 70, never a silent skip.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from '../cli/helpers.js';
import { eventCount, eventData, fileSnapshot, rawSql, rechain, rewriteEvent, scenarioCopy, withRaw } from './tamper-helpers.js';

/** The one-line message of a stored event that does not fit the schema. */
const unfit = (position: number, id: string, problem: string) =>
  `iommu-ledger: event #${position} (id ${id}): ${problem}: this stored event is not one iommu-ledger writes (the ledger was changed outside it); nothing was written; restore the ledger from a copy ('iommu-ledger verify' checks the hash chain)\n`;

const ID6 = 'ade357a1fcd16486b5f69f95:6';
const ID5 = 'ade357a1fcd16486b5f69f95:5';

describe('rebuild refuses a broken hash chain (issue 14 item 5)', () => {
  // `changes`: a rebuild from the tampered events drops one of the two over-unmaps of the audit.
  const tampers: Array<{ name: string; apply: (db: string) => void; verify: RegExp; changes: boolean }> = [
    {
      name: 'an event deleted (the over-unmap)',
      apply: (db) => rawSql(db, 'DELETE FROM events WHERE position = 6'),
      verify: /^position 6: missing \(the next stored event is 7\)/,
      changes: true,
    },
    {
      name: 'an event edited (the over-unmap made a 4K unmap of a 4K map)',
      apply: (db) => rawSql(db, `UPDATE events SET data = replace(data, '"size":"0x200000"', '"size":"0x1000"') WHERE position = 3`),
      verify: /^position 3: its content does not match the hash chain \(changed or replaced\)/,
      changes: true,
    },
    {
      name: 'two events swapped',
      apply: (db) => {
        rawSql(db, 'UPDATE events SET position = -3 WHERE position = 3');
        rawSql(db, 'UPDATE events SET position = 3 WHERE position = 4');
        rawSql(db, 'UPDATE events SET position = 4 WHERE position = -3');
      },
      verify: /^position 3: out of order \(stream gpu0 version 4 after 2\)/,
      changes: false,
    },
  ];

  for (const t of tampers) {
    it(`${t.name}: verify exits 1; rebuild refuses with exit 1 and changes nothing; --accept-broken-chain rebuilds from the events as they are`, async () => {
      const db = await scenarioCopy();
      const audit = async () => (await cli('--db', db, '--json', 'audit', 'over-unmaps', '--all')).out;
      const before = await audit();
      expect(JSON.parse(before)).toHaveLength(2);
      t.apply(db);
      const v = await cli('--db', db, 'verify');
      expect(v.code).toBe(1);
      expect(v.out).toMatch(t.verify);
      const chainMessage = v.out.trim();

      const file = fileSnapshot(db);
      const r = await cli('--db', db, 'rebuild');
      expect(r.code).toBe(1);
      expect(r.out).toBe('');
      expect(r.err).toBe(
        `iommu-ledger: rebuild refused: the hash chain is broken (${chainMessage}); rebuilding would recompute every projection from events changed outside iommu-ledger, so nothing was changed. ` +
          "Restore the ledger from a copy, or, to rebuild from the events as they are now, run 'iommu-ledger rebuild --accept-broken-chain'\n",
      );
      // Nothing changed: every table, projections included, as it was.
      expect(fileSnapshot(db)).toEqual(file);
      // Nor by a rebuild of some projections, even one that accepts the break: the others would
      // still follow the events as they were.
      const some = await cli('--db', db, 'rebuild', '--projection', 'findings');
      expect(some).toEqual({ code: 1, out: '', err: r.err });
      const someAccepted = await cli('--db', db, 'rebuild', '--projection', 'findings', '--accept-broken-chain');
      expect(someAccepted).toEqual({
        code: 1,
        out: '',
        err:
          `iommu-ledger: rebuild refused: the hash chain is broken (${chainMessage}); rebuilding some projections from the events as they are now would leave the others following them as they were, so nothing was changed. ` +
          "Restore the ledger from a copy, or rebuild every projection from the events as they are now: 'iommu-ledger rebuild --accept-broken-chain' (without --projection)\n",
      });
      expect(fileSnapshot(db)).toEqual(file);

      const a = await cli('--db', db, '--json', 'rebuild', '--accept-broken-chain');
      expect(a.code).toBe(0);
      const j = JSON.parse(a.out) as { events: number; chain: { ok: boolean; firstBad: number; message: string } };
      expect(j.chain).toMatchObject({ ok: false, message: chainMessage });
      const warned = await cli('--db', db, 'rebuild', '--accept-broken-chain');
      expect(warned.code).toBe(0);
      expect(warned.err).toBe(
        `iommu-ledger: warning: rebuilt from a broken hash chain (--accept-broken-chain): ${chainMessage}; the projections follow the events as they are now\n`,
      );
      expect(fileSnapshot(db)).not.toEqual(file);
      // What the attacker wanted: the over-unmap of gpu0 is gone from the answers.
      if (t.changes) expect(JSON.parse(await audit())).toHaveLength(1);
    });
  }

  it('an intact chain: rebuild verifies it and rebuilds (with or without --accept-broken-chain), and says so in --json', async () => {
    const db = await scenarioCopy();
    const r = await cli('--db', db, '--json', 'rebuild');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ events: 17, mismatches: 0, chain: { ok: true } });
    const a = await cli('--db', db, 'rebuild', '--accept-broken-chain');
    expect(a).toMatchObject({ code: 0, err: '', out: 'rebuilt the projections from 17 events; every stored outcome matches the core\n' });
    const some = await cli('--db', db, 'rebuild', '--projection', 'runs', '--accept-broken-chain');
    expect(some).toMatchObject({
      code: 0,
      err: '',
      out: 'rebuilt the projection runs from 17 events (the others kept, brought to the head); every stored outcome matches the core\n',
    });
  });

  it('a chain broken with the hashes recomputed after it is not caught by rebuild (nor by verify): that needs a checkpoint', async () => {
    const db = await scenarioCopy();
    rawSql(db, `UPDATE events SET data = replace(data, '"unmapped":"0x200000"', '"unmapped":"0x1000"') WHERE position = 6`);
    rechain(db, 6);
    expect((await cli('--db', db, 'verify')).code).toBe(0);
    expect((await cli('--db', db, 'rebuild')).code).toBe(0);
  });
});

/** Hostile bodies of event 6 (kvm's unmap), each stored with the hash chain recomputed. */
const HOSTILE: Array<{ name: string; data?: string; type?: string; problem: string }> = [
  { name: 'a null body', data: '{"body":null}', problem: 'body: expected an object, not null' },
  { name: 'an array body', data: '{"body":[1,2,3]}', problem: 'body: expected an object, not an array' },
  { name: 'a string body', data: '{"body":"unmap"}', problem: 'body: expected an object, not "unmap"' },
  { name: 'data that is null', data: 'null', problem: 'data: expected an object, not null' },
  {
    name: 'iova "0xzz"',
    data: '{"body":{"iova":"0xzz","size":"0x1000","ok":true,"unmapped":"0x200000"},"who":{"caller":"kvm"}}',
    problem: 'body.iova: expected "0x" and 1 to 16 lower-case hex digits, not "0xzz"',
  },
  {
    name: 'size "-0x1000"',
    data: '{"body":{"iova":"0x201000","size":"-0x1000","ok":true,"unmapped":"0x200000"},"who":{"caller":"kvm"}}',
    problem: 'body.size: expected "0x" and 1 to 16 lower-case hex digits, not "-0x1000"',
  },
  { name: 'a body nested 100,000 deep', data: `{"body":${'['.repeat(100_000)}${']'.repeat(100_000)}}`, problem: 'body: expected an object, not an array' },
  {
    name: 'an unknown field nested 100,000 deep',
    data: `{"body":{"iova":"0x201000","size":"0x1000","ok":true,"unmapped":"0x200000"},"who":{"caller":"kvm","x":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}}`,
    problem: 'who: unknown field "x"',
  },
  {
    name: 'an unknown event type',
    type: 'teleport',
    problem: 'type "teleport" is not an event type (domain-created, device-attached, device-detached, map, unmap, fault, domain-destroyed)',
  },
  {
    name: 'a map body under an unmap type',
    data: '{"body":{"iova":"0x201000","paddr":"0x1000","size":"0x1000","prot":3,"ok":true},"who":{"caller":"kvm"}}',
    problem: 'body.unmapped: missing',
  },
];

describe('hostile event bodies with a valid hash chain (issue 14 item 7)', () => {
  for (const h of HOSTILE) {
    it(`${h.name}: verify says intact; rebuild, replay, migrate, history and explain name event #6 and exit 1, and write nothing`, async () => {
      const db = await scenarioCopy();
      rewriteEvent(db, 6, { ...(h.data !== undefined ? { data: h.data } : {}), ...(h.type !== undefined ? { type: h.type } : {}) });
      expect((await cli('--db', db, 'verify')).code).toBe(0);
      const want = unfit(6, ID6, h.problem);
      const file = fileSnapshot(db);
      const out = join(db, '..', 'out.db');
      for (const argv of [
        ['rebuild'],
        ['rebuild', '--accept-broken-chain'],
        ['replay', '--semantics', 'strict', '--out', out],
        ['migrate', '--strategy', 'split-maps', '--out', out],
        ['history', '0x200000', '2M', '--domain', 'gpu0'],
        ['explain', '0x201000', '--domain', 'gpu0'],
      ]) {
        const r = await cli('--db', db, ...argv);
        expect({ argv, code: r.code, err: r.err }).toEqual({ argv, code: 1, err: want });
        expect(existsSync(out)).toBe(false);
      }
      expect(fileSnapshot(db)).toEqual(file);
    });
  }

  it('data that is not JSON (chain recomputed): every reader names the event, migrate --caller included', async () => {
    const db = await scenarioCopy();
    rewriteEvent(db, 6, { data: '{"body":' });
    expect((await cli('--db', db, 'verify')).code).toBe(0);
    const out = join(db, '..', 'out.db');
    for (const argv of [
      ['rebuild'],
      ['replay', '--semantics', 'strict', '--out', out],
      ['migrate', '--strategy', 'keep', '--out', out],
      ['migrate', '--strategy', 'keep', '--caller', 'kvm', '--out', out],
      ['history', '0x200000', '2M', '--domain', 'gpu0'],
      ['blame', '0x201000', '--domain', 'gpu0'],
    ]) {
      const r = await cli('--db', db, ...argv);
      expect({ argv, code: r.code }).toEqual({ argv, code: 1 });
      expect(r.err).toMatch(
        /^iommu-ledger: event #6 \(id ade357a1fcd16486b5f69f95:6\): its stored body is not valid JSON \(.+\): this stored event is not one iommu-ledger writes \(the ledger was changed outside it\); nothing was written; restore the ledger from a copy \('iommu-ledger verify' checks the hash chain\)\n$/,
      );
      expect(existsSync(out)).toBe(false);
    }
  });

  it('an unknown event type is not skipped: before, rebuild skipped it and replay then blamed a destroyed domain', async () => {
    const db = await scenarioCopy();
    rewriteEvent(db, 6, { type: 'teleport' });
    const r = await cli('--db', db, 'rebuild');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^iommu-ledger: event #6 \(id [^)]+\): type "teleport" is not an event type/);
    const p = await cli('--db', db, 'replay', '--semantics', 'strict', '--out', join(db, '..', 'r.db'));
    expect(p.code).toBe(1);
    expect(p.err).not.toMatch(/was destroyed/);
  });

  it('apply does not blame its input for a tampered event it reads (the map of a live run): the event is named, exit 1, nothing stored', async () => {
    const db = await scenarioCopy();
    const d = JSON.parse(eventData(db, 5).data) as { body: Record<string, unknown> };
    d.body.size = '64K';
    rewriteEvent(db, 5, { data: JSON.stringify(d) });
    const file = join(db, '..', 'one.jsonl');
    writeFileSync(file, '{"op":"unmap","domain":"gpu0","iova":"0x600000","size":"4K","caller":"vfio"}\n');
    const n = eventCount(db);
    const r = await cli('--db', db, 'apply', file);
    expect(r.code).toBe(1);
    expect(r.err).toBe(unfit(5, ID5, 'body.size: expected "0x" and 1 to 16 lower-case hex digits, not "64K"'));
    expect(r.err).not.toMatch(/one\.jsonl/);
    expect(eventCount(db)).toBe(n);
  });

  it('a domain-created event whose profile describes no profile is named by every command that reads it', async () => {
    const db = await scenarioCopy();
    const d = JSON.parse(eventData(db, 1).data) as { body: { profile: Record<string, unknown> } };
    d.body.profile.pgsizeBitmap = '0x0';
    rewriteEvent(db, 1, { data: JSON.stringify(d) });
    const id = eventData(db, 1).id;
    for (const argv of [['rebuild'], ['state', '--domain', 'gpu0'], ['replay', '--semantics', 'strict', '--out', join(db, '..', 'x.db')]]) {
      const r = await cli('--db', db, ...argv);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(
        new RegExp(
          `^iommu-ledger: event #1 \\(id ${id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\): body\\.profile: .+: this stored event is not one iommu-ledger writes`,
        ),
      );
      expect(r.err.split('\n')).toHaveLength(2);
    }
  });

  it('an event whose domain is missing from the streams table (with --accept-broken-chain, which verify flags) is named, not skipped', async () => {
    const db = await scenarioCopy();
    withRaw(db, (raw) => raw.pragma('foreign_keys = OFF'));
    rawSql(db, "UPDATE streams SET id = 99 WHERE name = 'dsp'");
    expect((await cli('--db', db, 'verify')).code).toBe(1);
    const r = await cli('--db', db, 'rebuild', '--accept-broken-chain');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^iommu-ledger: event #11 \(id [^)]+\): its domain \(stream 2\) is missing from the streams table: /);
    const p = await cli('--db', db, 'replay', '--semantics', 'strict', '--out', join(db, '..', 'x.db'));
    expect(p.code).toBe(1);
    expect(p.err).toMatch(/^iommu-ledger: event #11 \(id [^)]+\): its domain \(stream 2\) is missing from the streams table: /);
  });
});
