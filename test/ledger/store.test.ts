import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { Ledger, LedgerError } from '../../src/projections/ledger.js';
import { openDatabase, LedgerOpenError, SCHEMA_VERSION } from '../../src/events/db.js';
import { ConcurrencyError } from '../../src/events/store.js';
import { tempDb } from './helpers.js';

const scenario = [
  { op: 'domain', domain: 'dsp', profile: 'omap' },
  { op: 'map', domain: 'dsp', iova: '0x100000', paddr: '0x80100000', size: '1M', caller: 'camera', site: 'drivers/media/isp.c:10' },
  { op: 'unmap', domain: 'dsp', iova: '0x101000', size: '4K', caller: 'isp' },
  { op: 'fault', domain: 'dsp', iova: '0x180000', device: 'isp' },
];

describe('event store', () => {
  it('stores commands with their outcomes at consecutive positions, per-stream versions and a verified chain', () => {
    const path = tempDb();
    const l = new Ledger(path);
    const out = l.appendRaw(scenario);
    expect(out.map((o) => o.position)).toEqual([1, 2, 3, 4]);
    expect(out[2]!.unmapped).toBe(0x100000n); // the 2011 OMAP over-unmap
    expect(out[3]!.faultCause).toBe('use-after-collateral-unmap');
    const rows = l.db.prepare('SELECT position, version, type FROM events ORDER BY position').all();
    expect(rows).toEqual([
      { position: 1, version: 1, type: 'domain-created' },
      { position: 2, version: 2, type: 'map' },
      { position: 3, version: 3, type: 'unmap' },
      { position: 4, version: 4, type: 'fault' },
    ]);
    expect(l.store.verify().ok).toBe(true);
    l.close();
  });

  it('rejects UPDATE and DELETE on events (immutability triggers)', () => {
    const path = tempDb();
    const l = new Ledger(path);
    l.appendRaw(scenario);
    expect(() => l.db.prepare("UPDATE events SET data = '{}' WHERE position = 2").run()).toThrow(/immutable/);
    expect(() => l.db.prepare('DELETE FROM events WHERE position = 2').run()).toThrow(/immutable/);
    expect(l.store.verify().ok).toBe(true);
    l.close();
  });

  it('verify names the first changed, removed or reordered position', () => {
    for (const tamper of ['change', 'remove', 'reorder'] as const) {
      const path = tempDb();
      const l = new Ledger(path);
      l.appendRaw([
        ...scenario,
        { op: 'map', domain: 'dsp', iova: '0x200000', paddr: '0x90000000', size: '64K' },
        { op: 'unmap', domain: 'dsp', iova: '0x200000', size: '64K' },
      ]);
      l.close();
      const db = new Database(path);
      db.exec('DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;');
      if (tamper === 'change') db.prepare("UPDATE events SET data = replace(data, '0x101000', '0x102000') WHERE position = 3").run();
      if (tamper === 'remove') db.prepare('DELETE FROM events WHERE position = 3').run();
      if (tamper === 'reorder') {
        // swap the contents (and hashes) of positions 5 and 6
        const a = db.prepare('SELECT * FROM events WHERE position = 5').get() as Record<string, unknown>;
        const b = db.prepare('SELECT * FROM events WHERE position = 6').get() as Record<string, unknown>;
        const set = db.prepare('UPDATE events SET version = ?, type = ?, event_id = ?, data = ?, hash = ? WHERE position = ?');
        db.prepare("UPDATE events SET event_id = event_id || '-tmp' || position WHERE position IN (5, 6)").run();
        db.prepare('UPDATE events SET version = version + 100 WHERE position IN (5, 6)').run();
        set.run(b.version, b.type, b.event_id, b.data, b.hash, 5);
        set.run(a.version, a.type, a.event_id, a.data, a.hash, 6);
      }
      db.close();
      const l2 = new Ledger(path);
      const v = l2.store.verify();
      expect(v.ok).toBe(false);
      expect(v.firstBad).toBe(tamper === 'reorder' ? 5 : 3);
      expect(v.problem).toBe(tamper === 'change' ? 'changed' : tamper === 'remove' ? 'removed' : 'reordered');
      l2.close();
    }
  });

  it('verify reads in pages: a change past the first page, an event stored before position 1, non-ASCII text, several domains; rebuild, which checks the chain as it folds, finds the same', () => {
    const cmds: unknown[] = [
      { op: 'domain', domain: 'dsp', profile: 'omap' },
      { op: 'domain', domain: 'gpü😀', profile: 'intel-vtd' },
    ];
    for (let i = 0; i < 1200; i++) {
      const domain = i % 3 ? 'dsp' : 'gpü😀';
      const iova = `0x${(0x100000 + i * 0x1000).toString(16)}`;
      cmds.push({ op: 'map', domain, iova, paddr: '0x80000000', size: '4K', caller: i % 2 ? 'cämera😀' : 'isp' });
    }
    for (const tamper of ['none', 'change', 'before-first'] as const) {
      const path = tempDb();
      const l = new Ledger(path);
      l.appendRaw(cmds.slice(0, 700));
      l.appendRaw(cmds.slice(700));
      l.close();
      const db = new Database(path);
      db.exec('DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;');
      if (tamper === 'change') db.prepare("UPDATE events SET data = replace(data, 'isp', 'isq') WHERE position = 1101").run();
      if (tamper === 'before-first')
        db.prepare(
          "INSERT INTO events (position, stream, version, type, schema_version, event_id, recorded_at, time, data, hash) SELECT 0, stream, version + 10000, type, schema_version, event_id || 'x', recorded_at, time, data, hash FROM events WHERE position = 1",
        ).run();
      db.close();
      const l2 = new Ledger(path);
      const v = l2.store.verify();
      if (tamper === 'none') {
        expect(v).toMatchObject({ ok: true, events: 1202 });
      } else {
        expect(v.ok).toBe(false);
        expect(v.firstBad).toBe(tamper === 'change' ? 1101 : 1);
        expect(v.events).toBe(tamper === 'change' ? 1100 : 0);
        expect(v.problem).toBe(tamper === 'change' ? 'changed' : 'inserted');
        if (tamper === 'before-first')
          expect(v.message).toBe('position 1: an extra event, stored at position 0, comes before it; the chain is broken from there');
      }
      // rebuild reads the log once, checking the chain as it folds: the same verdict as verify.
      const runsBefore = l2.db.prepare('SELECT count(*) FROM runs').pluck().get();
      if (tamper === 'none') expect(l2.rebuild().chain).toEqual(v);
      else {
        expect(() => l2.rebuild()).toThrow(expect.objectContaining({ name: 'BrokenChainError', message: expect.stringContaining(v.message) }));
        expect(l2.db.prepare('SELECT count(*) FROM runs').pluck().get()).toBe(runsBefore);
        if (tamper === 'change') expect(l2.rebuild(undefined, { acceptBrokenChain: true }).chain).toEqual(v);
      }
      l2.close();
    }
  });

  it('verify reports events whose stream row is missing, at the first of them', () => {
    const path = tempDb();
    const l = new Ledger(path);
    l.appendRaw([...scenario, { op: 'map', domain: 'dsp', iova: '0x200000', paddr: '0x90000000', size: '64K' }]);
    const first = l.db.prepare("SELECT min(position) FROM events WHERE stream = (SELECT id FROM streams WHERE name = 'dsp')").pluck().get() as number;
    l.close();
    const db = new Database(path);
    db.prepare("DELETE FROM streams WHERE name = 'dsp'").run();
    db.close();
    const l2 = new Ledger(path);
    const v = l2.store.verify();
    expect(v).toMatchObject({ ok: false, firstBad: first, problem: 'changed', events: first - 1 });
    expect(v.message).toMatch(/is missing from the streams table/);
    l2.close();
  });

  it('is idempotent: the same ids store nothing new', () => {
    const path = tempDb();
    const l = new Ledger(path);
    const withIds = scenario.map((c, i) => ({ ...c, id: `scenario-${i}` }));
    l.appendRaw(withIds);
    const again = l.appendRaw(withIds);
    expect(again.every((o) => o.duplicate)).toBe(true);
    expect(l.lastPosition).toBe(4);
    l.close();
  });

  it('a bad command names the field and nothing of its batch is stored', () => {
    const path = tempDb();
    const l = new Ledger(path);
    l.appendRaw(scenario.slice(0, 2));
    expect(() =>
      l.appendRaw([
        { op: 'map', domain: 'dsp', iova: '0x300000', paddr: '0x90000000', size: '4K' },
        { op: 'map', domain: 'dsp', iova: '0x400000', paddr: 'zzz', size: '4K' },
      ]),
    ).toThrow(/command 2: paddr: .*not a number/);
    expect(() => l.appendRaw([{ op: 'map', domain: 'nope', iova: '0', paddr: '0', size: '4K' }])).toThrow(LedgerError);
    expect(l.lastPosition).toBe(2);
    // the state is unchanged too: 0x300000 is free to map
    expect(l.appendRaw([{ op: 'map', domain: 'dsp', iova: '0x300000', paddr: '0x90000000', size: '4K' }])[0]!.ok).toBe(true);
    expect(l.store.verify().ok).toBe(true);
    l.close();
  });

  it('optimistic concurrency: a writer with a stale expected version gets a conflict, not a lost event', () => {
    const path = tempDb();
    const a = new Ledger(path);
    const b = new Ledger(path);
    a.appendRaw(scenario.slice(0, 2));
    b.appendRaw([{ op: 'unmap', domain: 'dsp', iova: '0x100000', size: '1M', caller: 'b' }], { expectedVersions: { dsp: 2 } });
    expect(() => a.appendRaw([{ op: 'unmap', domain: 'dsp', iova: '0x100000', size: '1M', caller: 'a' }], { expectedVersions: { dsp: 2 } })).toThrow(
      ConcurrencyError,
    );
    // Without an expectation, a sees b's event and its own lands after it, on the current state.
    const o = a.appendRaw([{ op: 'unmap', domain: 'dsp', iova: '0x100000', size: '1M', caller: 'a' }]);
    expect(o[0]!.position).toBe(4);
    expect(o[0]!.unmapped).toBe(0n); // b already unmapped it
    expect(a.store.verify().ok).toBe(true);
    a.close();
    b.close();
  });

  it('refuses a ledger written by a newer version, and a foreign SQLite file', () => {
    const path = tempDb();
    new Ledger(path).close();
    const db = new Database(path);
    db.pragma(`user_version = ${SCHEMA_VERSION() + 1}`);
    db.close();
    expect(() => openDatabase(path)).toThrow(/newer iommu-ledger/);
    const other = tempDb('other.db');
    const o = new Database(other);
    o.exec('CREATE TABLE t (x)');
    o.close();
    expect(() => openDatabase(other)).toThrow(LedgerOpenError);
  });
});
