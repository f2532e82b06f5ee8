/**
 * history, blame and explain name only what happened to the pages at the address asked about
 * (issue 13, items 4 and 5): an unmap that rewrote the run holding an address, but left the page
 * at that address as it was, is not an event of that address; an unmap that removed one page of a
 * run removed that page, not the run.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Ledger } from '../../src/projections/ledger.js';
import { Queries } from '../../src/projections/queries.js';
import { explainText } from '../../src/cli/render/explain.js';
import { cli } from '../cli/helpers.js';
import { historyArb, tempDb, PROFILE_NAMES } from './helpers.js';

function ledgerOf(cmds: object[]): string {
  const path = tempDb();
  const l = new Ledger(path);
  l.appendRaw(cmds);
  l.close();
  return path;
}

const positions = (q: Queries, domain: string | undefined, start: bigint, end: bigint, at?: number) =>
  q.history(domain, start, end, at).events.map((e) => e.position);

/** /work/shared/repro/h.jsonl: a 64K map, then two 4K unmaps elsewhere in it. */
const H = [
  { op: 'domain', domain: 'd', profile: 'intel-vtd' },
  { op: 'map', domain: 'd', iova: '0x0', paddr: '0x100000', size: '64K', caller: 'a' },
  { op: 'unmap', domain: 'd', iova: '0x8000', size: '4K', caller: 'b' },
  { op: 'unmap', domain: 'd', iova: '0xc000', size: '4K', caller: 'b' },
];

/** /work/shared/repro/e.jsonl: amd-v1 maps 64K at an 8K-aligned paddr as 8 pages of 8K; a 4K unmap removes one of them. */
const E = [
  { op: 'domain', domain: 'd', profile: 'amd-v1' },
  { op: 'map', domain: 'd', iova: '0x0', paddr: '0x102000', size: '64K', caller: 'a' },
  { op: 'unmap', domain: 'd', iova: '0x2000', size: '4K', caller: 'b' },
];

describe('history and blame: only the events that changed the pages at the address', () => {
  it('h.jsonl: an unmap of 0x8000 rewrote the run holding 0x0 but is not an event of 0x0', async () => {
    const path = ledgerOf(H);
    const q = new Queries(path);
    expect(positions(q, 'd', 0x0n, 0x1n)).toEqual([2]);
    expect(positions(q, 'd', 0x0n, 0x8000n)).toEqual([2]);
    expect(positions(q, 'd', 0x0n, 0x8001n)).toEqual([2, 3]);
    expect(positions(q, 'd', 0x0n, 0x10000n)).toEqual([2, 3, 4]);
    expect(positions(q, 'd', 0x8000n, 0x8001n)).toEqual([2, 3]);
    // 0x9000 was in the run #3 wrote and #4 rewrote; its page never changed.
    expect(positions(q, 'd', 0x9000n, 0x9001n)).toEqual([2]);
    expect(positions(q, 'd', 0xc000n, 0xd000n)).toEqual([2, 4]);
    expect(positions(q, 'd', 0x0n, 0x1n, 3)).toEqual([2]);

    const b = q.blame('d', 0x0n);
    expect(b.page).toMatchObject({ iova: 0x0n, paddr: 0x100000n, pageSize: 0x1000n, count: 1n, mappedBy: 2, validFrom: 2 });
    expect(b.page?.validTo).toBeUndefined();
    // The run that holds it now (cut by #3) is still given, as stored.
    expect(b.run).toMatchObject({ iova: 0x0n, count: 8n, validFrom: 3 });
    expect(b.cause?.position).toBe(2);
    expect(b.chain.map((c) => [c.began.position, c.ended?.position])).toEqual([[2, undefined]]);

    // As of #2 the page lasts (the row's end at #3 is not the page's), and the run is the whole map.
    const early = q.blame('d', 0x0n, 2);
    expect(early.page?.validTo).toBeUndefined();
    expect(early.run).toMatchObject({ count: 16n, validFrom: 2, validTo: 3 });

    const gone = q.blame('d', 0x8000n);
    expect(gone.page).toBeUndefined();
    expect(gone.cause?.position).toBe(3);
    expect(gone.chain.map((c) => [c.page.iova, c.page.count, c.began.position, c.ended?.position])).toEqual([[0x8000n, 1n, 2, 3]]);
    q.close();

    expect((await cli('--db', path, 'history', '0x0')).out).toBe(
      [
        'history of 0x0..0x1 in d up to event #4: 1 event(s)',
        '#  TIME  EVENT  WHAT                 WHO',
        '-  ----  -----  -------------------  ---',
        '2        map    0x0+64K -> 0x100000  a',
        '',
      ].join('\n'),
    );
    expect((await cli('--db', path, 'blame', '0x0')).out).toBe(
      [
        '0x0 is mapped as of #4: a 4K page at 0x0..0x1000 -> 0x100000 (rw), by event #2 (a)',
        'FROM  TO    PAGES                                      MAPPED BY  ENDED BY',
        '----  ----  -----------------------------------------  ---------  --------',
        '#2    live  a 4K page at 0x0..0x1000 -> 0x100000 (rw)  #2',
        '',
      ].join('\n'),
    );
    const json = JSON.parse((await cli('--db', path, '--json', 'blame', '0x0')).out) as { page: unknown; run: unknown; chain: Array<{ ended?: unknown }> };
    expect(json.page).toMatchObject({ iova: '0x0', pageSize: '0x1000', count: '0x1', validFrom: 2 });
    expect(json.run).toMatchObject({ iova: '0x0', count: '0x8', validFrom: 3 });
    expect(json.chain).toHaveLength(1);
    expect(json.chain[0]!.ended).toBeUndefined();
    expect((await cli('--db', path, '--json', 'history', '0x0')).out).not.toContain('0x8000');
  });

  it('ARM split on unmap: the split changed the page at every address of the block; a later cut elsewhere did not', async () => {
    const path = ledgerOf([
      { op: 'domain', domain: 's', profile: 'arm-lpae-4k' },
      { op: 'map', domain: 's', iova: '0x200000', paddr: '0x80000000', size: '2M', caller: 'a' },
      // Splits the 2M block into 4K pages and removes one of them.
      { op: 'unmap', domain: 's', iova: '0x201000', size: '4K', caller: 'b' },
      // Cuts the last 4K page off the 4K run that holds 0x300000.
      { op: 'unmap', domain: 's', iova: '0x3ff000', size: '4K', caller: 'b' },
    ]);
    const q = new Queries(path);
    expect(positions(q, 's', 0x300000n, 0x300001n)).toEqual([2, 3]);
    expect(positions(q, 's', 0x3ff000n, 0x3ff001n)).toEqual([2, 3, 4]);
    expect(positions(q, 's', 0x200000n, 0x400000n)).toEqual([2, 3, 4]);
    const b = q.blame('s', 0x300000n);
    expect(b.cause?.position).toBe(2);
    expect(b.page).toMatchObject({ iova: 0x300000n, paddr: 0x80100000n, pageSize: 0x1000n, count: 1n, validFrom: 3, mappedBy: 2 });
    expect(b.chain.map((c) => [c.page.iova, c.page.pageSize, c.began.position, c.ended?.position])).toEqual([
      [0x300000n, 0x1000n, 3, undefined],
      [0x200000n, 0x200000n, 2, 3],
    ]);
    q.close();
    expect((await cli('--db', path, 'blame', '0x300000')).out).toBe(
      [
        '0x300000 is mapped as of #4: a 4K page at 0x300000..0x301000 -> 0x80100000 (rw), by event #2 (a)',
        'FROM  TO    PAGES                                               MAPPED BY  ENDED BY',
        '----  ----  --------------------------------------------------  ---------  ----------',
        '#3    live  a 4K page at 0x300000..0x301000 -> 0x80100000 (rw)  #2',
        '#2    #3    a 2M page at 0x200000..0x400000 -> 0x80000000 (rw)  #2         unmap by b',
        '',
      ].join('\n'),
    );
  });

  it('a domain destroyed is an event of every address it held', () => {
    const q = new Queries(ledgerOf([...H, { op: 'destroy', domain: 'd' }]));
    expect(positions(q, 'd', 0x0n, 0x1n)).toEqual([2, 5]);
    expect(q.blame('d', 0x0n).chain.map((c) => [c.began.position, c.ended?.position])).toEqual([[2, 5]]);
    q.close();
  });

  // A model of the rule, checked against the state at every position: an event is in the history
  // of a range when the pages overlapping the range (place, size, physical address, protection,
  // map event) differ just before and just after it, or it is a fault in the range or an unmap
  // with a finding whose request or collateral reaches it.
  it('matches the states before and after every event (random histories)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PROFILE_NAMES).chain((p) => historyArb(p, 40)),
        fc.integer({ min: 0, max: 4095 }),
        fc.constantFrom(1n, 0x1000n, 0x3000n, 0x200000n),
        (cmds, page, size) => {
          const q = new Queries(ledgerOf(cmds));
          const start = 0x4000_0000n + BigInt(page) * 0x1000n + (size === 1n ? 0x800n : 0n);
          const end = start + size;
          const last = q.lastPosition;
          const pagesAt = (p: number): string[] => {
            const out: string[] = [];
            for (const r of q.stateAt('d0', p).pages) {
              const re = r.iova + r.pageSize * r.count;
              if (r.iova >= end || re <= start) continue;
              for (let a = r.iova; a < re; a += r.pageSize) {
                if (a + r.pageSize <= start || a >= end) continue;
                out.push(`${a}:${r.pageSize}:${r.paddr + (a - r.iova)}:${r.prot}:${r.mappedBy}`);
              }
            }
            return out;
          };
          const states = Array.from({ length: last + 1 }, (_, p) => pagesAt(p));
          const expected = new Set<number>();
          for (let p = 1; p <= last; p++) if (states[p]!.join() !== states[p - 1]!.join()) expected.add(p);
          for (const f of q.faults({ domain: 'd0' })) if (f.iova >= start && f.iova < end) expected.add(f.position);
          for (const f of q.findings({ domain: 'd0' })) {
            const reaches = (s: bigint, n: bigint) => s < end && s + n > start;
            if (reaches(f.requested.iova, f.requested.size) || f.collateral.some((c) => reaches(c.iova, c.size))) expected.add(f.position);
          }
          expect(positions(q, 'd0', start, end)).toEqual([...expected].sort((a, b) => a - b));

          // blame: a lifetime of the page at start begins where a page appears there or changes,
          // and ends where it goes or changes.
          const at = (p: number) => (size === 1n ? states[p]![0] : pagesAt(p).find((k) => isAt(k, start)));
          const began: number[] = [];
          const ended: number[] = [];
          for (let p = 1; p <= last; p++) {
            if (at(p) === at(p - 1)) continue;
            if (at(p - 1) !== undefined) ended.push(p);
            if (at(p) !== undefined) began.push(p);
          }
          const b = q.blame('d0', start);
          const chain = [...b.chain].reverse();
          expect(chain.map((c) => c.began.position)).toEqual(began);
          expect(chain.flatMap((c) => (c.ended ? [c.ended.position] : []))).toEqual(ended);
          for (const c of chain) expect(start >= c.page.iova && start < c.page.iova + c.page.pageSize && c.page.count === 1n).toBe(true);
          expect(b.page !== undefined).toBe(at(last) !== undefined);
          q.close();
        },
      ),
      { numRuns: 40 },
    );
  });
});

/** Does a page key `iova:size:…` hold address x? */
function isAt(key: string, x: bigint): boolean {
  const [a, s] = key.split(':');
  const iova = BigInt(a!);
  return x >= iova && x < iova + BigInt(s!);
}

describe('explain names the pages an unmap removed, not the run they were in', () => {
  it('e.jsonl: one 8K page of eight removed', async () => {
    const path = ledgerOf(E);
    const q = new Queries(path);
    const e = q.explain('d', 0x3000n);
    expect(explainText(e)).toBe(
      '0x3000 in domain d is not mapped as of event #3 because of an over-unmap: b asked to unmap only 0x2000+4K (event #3), ' +
        "but the driver removed the whole page — an 8K page at 0x2000..0x4000 -> 0x104000 (rw) — which a had mapped at event #2; a still meant it to be mapped. Harmful: the collateral was a's.",
    );
    expect(e.kind === 'over-unmapped' && e.removed).toEqual({ iova: 0x2000n, size: 0x2000n, paddr: 0x104000n });
    expect(e.blame.chain.map((c) => [c.page.iova, c.page.pageSize, c.page.count, c.run.count])).toEqual([[0x2000n, 0x2000n, 1n, 8n]]);
    expect(positions(q, 'd', 0x3000n, 0x3001n)).toEqual([2, 3]);
    expect(positions(q, 'd', 0x6000n, 0x6001n)).toEqual([2]);
    // A page that stayed: mapped by #2, the page and not the run.
    expect(explainText(q.explain('d', 0x4000n))).toBe(
      '0x4000 in domain d is mapped as of event #3: an 8K page at 0x4000..0x6000 -> 0x106000 (rw), mapped by a (event #2, map of 0x0+64K).',
    );
    q.close();
    const json = JSON.parse((await cli('--db', path, '--json', 'explain', '0x3000')).out) as { text: string; removed: unknown };
    expect(json.removed).toEqual({ iova: '0x2000', size: '0x2000', paddr: '0x104000' });
    expect(json.text).toContain('an 8K page at 0x2000..0x4000 -> 0x104000 (rw)');
    expect((await cli('--db', path, 'explain', '0x3000')).out).toBe(`${json.text}\n`);
  });

  it('legacy: two pages removed by one unmap are named as two pages', () => {
    const q = new Queries(ledgerOf([...E.slice(0, 2), { op: 'unmap', domain: 'd', iova: '0x2000', size: '12K', caller: 'b' }]));
    expect(explainText(q.explain('d', 0x5000n))).toBe(
      '0x5000 in domain d is not mapped as of event #3 because of an over-unmap: b asked to unmap only 0x2000+12K (event #3), ' +
        "but the driver removed whole pages — 2 8K pages at 0x2000..0x6000 -> 0x104000 (rw) — which a had mapped at event #2; a still meant it to be mapped. Harmful: the collateral was a's.",
    );
    q.close();
  });

  it("the kernel's report removed part of a block: the bytes removed, and the block they were part of", () => {
    const q = new Queries(
      ledgerOf([
        { op: 'domain', domain: 's', profile: 'arm-lpae-4k' },
        { op: 'map', domain: 's', iova: '0x200000', paddr: '0x80000000', size: '2M', caller: 'a' },
        { op: 'unmap', domain: 's', iova: '0x201000', size: '4K', caller: 'c', observedUnmapped: '0x2000' },
      ]),
    );
    const e = q.explain('s', 0x200000n);
    expect(explainText(e)).toBe(
      '0x200000 in domain s is not mapped as of event #3 because of an over-unmap: c asked to unmap only 0x201000+4K (event #3), ' +
        "but the unmap removed more — 8K at 0x200000..0x202000 -> 0x80000000 (rw) of a 2M page at 0x200000..0x400000 -> 0x80000000 (rw) — which a had mapped at event #2; a still meant it to be mapped. Harmful: the collateral was a's.",
    );
    expect(e.kind === 'over-unmapped' && e.removed).toEqual({ iova: 0x200000n, size: 0x2000n, paddr: 0x80000000n });
    // The rest of the block is mapped again in 4K pages: the page at 0x300000 changed at #3.
    expect(positions(q, 's', 0x300000n, 0x300001n)).toEqual([2, 3]);
    q.close();
  });
});
