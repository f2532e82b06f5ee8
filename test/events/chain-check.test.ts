import { writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/events/chain.js';
import { ParallelChainCheck, setChainWorker, verifyInTwo } from '../../src/events/chain-check.js';
import { CHAIN_THREAD_FROM, Ledger } from '../../src/projections/ledger.js';
import { cli } from '../cli/helpers.js';
import { historyArb, PROFILE_NAMES, tempDb } from '../ledger/helpers.js';
import { breakChainAt, rawSql } from '../reliability/tamper-helpers.js';

/** A ledger of `n` events in one domain: maps of 4K pages, each unmapped by the next event. */
function ledgerOf(n: number): string {
  const path = tempDb();
  const l = new Ledger(path);
  const cmds: object[] = [{ op: 'domain', domain: 'gpu0', profile: 'intel-vtd' }];
  for (let i = 1; i < n; i++) {
    const iova = `0x${(0x100000 + Math.floor(i / 2) * 0x1000).toString(16)}`;
    cmds.push(
      i % 2 ? { op: 'map', domain: 'gpu0', iova, paddr: iova, size: '4K', caller: 'nic' } : { op: 'unmap', domain: 'gpu0', iova, size: '4K', caller: 'nic' },
    );
  }
  for (let i = 0; i < cmds.length; i += 10_000) l.appendRaw(cmds.slice(i, i + 10_000));
  l.close();
  return path;
}

function verified(path: string): unknown {
  const l = new Ledger(path);
  try {
    return l.store.verify();
  } finally {
    l.close();
  }
}

describe('the hash chain walked on a worker thread (ParallelChainCheck)', () => {
  const restore = setChainWorker(undefined);
  setChainWorker(restore);
  afterEach(() => {
    setChainWorker(restore);
  });

  it('answers what verify answers, intact or broken', () => {
    const path = ledgerOf(300);
    for (const at of [undefined, 120]) {
      if (at !== undefined) breakChainAt(path, at);
      const check = ParallelChainCheck.start(path)!;
      expect(check).toBeDefined();
      const r = check.wait();
      expect(r).toEqual(verified(path));
      expect(r!.ok).toBe(at === undefined);
      if (at !== undefined) expect(r!.firstBad).toBe(at);
      // Asked again, without waiting: the same answer.
      expect(check.poll()).toEqual(r);
      check.stop();
    }
  });

  it('starts no worker for an in-memory or missing file, nor without a module for it', () => {
    expect(ParallelChainCheck.start(':memory:')).toBeUndefined();
    expect(ParallelChainCheck.start(`${tempDb()}-missing`)).toBeUndefined();
    const path = ledgerOf(3);
    setChainWorker(undefined);
    expect(ParallelChainCheck.start(path)).toBeUndefined();
    // The rebuild then walks the chain in its own read: the same answer.
    const l = new Ledger(path, { chainThreadFrom: 0 });
    expect(l.rebuild().chain).toEqual(l.store.verify());
    l.close();
  });

  it('a worker that fails answers nothing, and the rebuild walks the chain itself', () => {
    const junk = tempDb('junk.db');
    writeFileSync(junk, 'not a database, but a file of the same name');
    const check = ParallelChainCheck.start(junk)!;
    expect(check).toBeDefined();
    expect(check.wait()).toBeUndefined();
    check.stop();
    // A worker whose module cannot open the file: the rebuild's own walk finds the break.
    const path = ledgerOf(40);
    breakChainAt(path, 7);
    setChainWorker((data) => restore!({ ...data, path: junk }));
    const l = new Ledger(path, { chainThreadFrom: 0 });
    expect(() => l.rebuild()).toThrow('position 7: its content does not match the hash chain');
    expect(l.rebuild(undefined, { acceptBrokenChain: true }).chain).toEqual(l.store.verify());
    l.close();
  });

  it('gives up on a worker that shows no sign of life (one that never starts its walk, or died)', () => {
    const path = ledgerOf(3);
    // A worker that takes its data and does nothing with it.
    setChainWorker((data) => new Worker('setTimeout(() => {}, 60_000)', { eval: true, workerData: data, transferList: [data.port] }));
    const check = ParallelChainCheck.start(path)!;
    const t = Date.now();
    expect(check.wait(300)).toBeUndefined();
    expect(Date.now() - t).toBeGreaterThanOrEqual(300);
    expect(check.poll()).toBeUndefined();
    check.stop();
  });

  it(`a rebuild of ${CHAIN_THREAD_FROM} events or more uses it by default, as the command line runs it: intact, then refused at a break`, async () => {
    const path = ledgerOf(CHAIN_THREAD_FROM);
    let started = 0;
    setChainWorker((data) => {
      started++;
      return restore!(data);
    });
    const ok = await cli('--db', path, '--json', 'rebuild');
    expect(started).toBe(1);
    expect(ok.code).toBe(0);
    expect(verified(path)).toMatchObject(JSON.parse(ok.out).chain as object);
    breakChainAt(path, 20_000);
    const chain = verified(path) as { message: string };
    const r = await cli('--db', path, 'rebuild');
    expect(r.code).toBe(1);
    expect(r.err).toContain(`rebuild refused: the hash chain is broken (${chain.message})`);
    const accepted = await cli('--db', path, '--json', 'rebuild', '--accept-broken-chain');
    expect(started).toBe(3);
    expect(accepted.code).toBe(0);
    expect(chain).toMatchObject(JSON.parse(accepted.out).chain as object);
    expect(JSON.parse(accepted.out).chain.ok).toBe(false);
  });

  it('verify in two halves (verifyInTwo) answers what one walk answers, wherever the halves meet and whatever was tampered with', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PROFILE_NAMES).chain((p) => historyArb(p, 30)),
        fc.constantFrom('none', 'change', 'remove', 'swap'),
        fc.nat(),
        fc.nat(),
        (cmds, harm, at, split) => {
          const path = tempDb();
          const l = new Ledger(path);
          l.appendRaw(cmds);
          const last = l.lastPosition;
          l.close();
          const pos = 1 + (at % last);
          if (harm === 'change') breakChainAt(path, pos);
          if (harm === 'remove') rawSql(path, 'DELETE FROM events WHERE position = ?', pos);
          // Two events trade places: the per-stream versions tell a reorder from a change.
          if (harm === 'swap' && pos < last) {
            rawSql(path, 'UPDATE events SET position = -1 WHERE position = ?', pos);
            rawSql(path, 'UPDATE events SET position = ? WHERE position = ?', pos, pos + 1);
            rawSql(path, 'UPDATE events SET position = ? WHERE position = -1', pos + 1);
          }
          const db = new Database(path, { readonly: true });
          try {
            expect(verifyInTwo(db, path, 1 + (split % last))).toEqual(verifyChain(db));
          } finally {
            db.close();
          }
        },
      ),
      { numRuns: Number(process.env.VERIFY_IN_TWO_RUNS ?? 40) },
    );
  });
});
