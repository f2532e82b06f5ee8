import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/projections/ledger.js';
import { projectionSnapshot, tempDb } from './helpers.js';

// LedgerOptions.collectGarbage: what the CLI's apply and rebuild pass to keep a long session's
// memory flat. It is called every `collectGarbageEvery` events appended or folded, whatever the
// batches, and changes nothing the ledger stores.
describe('collectGarbage', () => {
  const cmds = (n: number) => [
    { op: 'domain', domain: 'd', profile: 'intel-vtd' },
    ...Array.from({ length: n }, (_, i) =>
      i % 2 === 0
        ? { op: 'map', domain: 'd', iova: `0x${((i + 1) * 0x1000).toString(16)}`, paddr: '0x1000', size: '4K' }
        : { op: 'unmap', domain: 'd', iova: `0x${(i * 0x1000).toString(16)}`, size: '4K' },
    ),
  ];

  it('is called every N events appended, across batches, and every N events a rebuild folds', () => {
    let calls = 0;
    const l = new Ledger(tempDb(), { collectGarbage: () => calls++, collectGarbageEvery: 100 });
    const all = cmds(249); // 250 events
    l.appendRaw(all.slice(0, 77));
    l.appendRaw(all.slice(77, 160));
    expect(calls).toBe(1);
    l.appendRaw(all.slice(160));
    expect(calls).toBe(2);
    const before = projectionSnapshot(l.db);
    const r = l.rebuild();
    expect(r.events).toBe(250);
    // 50 events counted after the appends' second call, then 250 folded: 300 in all.
    expect(calls).toBe(5);
    expect(projectionSnapshot(l.db)).toEqual(before);
    l.close();
  });

  it('leaves the tables as a ledger without it leaves them', () => {
    const with_ = new Ledger(tempDb(), { collectGarbage: () => undefined, collectGarbageEvery: 7 });
    const without = new Ledger(tempDb());
    with_.appendRaw(cmds(60));
    without.appendRaw(cmds(60));
    expect(projectionSnapshot(with_.db)).toEqual(projectionSnapshot(without.db));
    with_.close();
    without.close();
  });

  it('is refused when N is not a positive integer', () => {
    expect(() => new Ledger(tempDb(), { collectGarbage: () => undefined, collectGarbageEvery: 0 })).toThrow(/collectGarbageEvery: 0 is not a positive integer/);
  });
});
