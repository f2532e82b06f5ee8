import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { withWords } from '../../src/cli/render/callers.js';
import { defineMigration, MigrationError, type Migration, type StrategyName } from '../../src/migrate/define.js';
import { migrate, REGRESSIONS, type MigrationResult } from '../../src/migrate/engine.js';
import { Ledger } from '../../src/projections/ledger.js';
import { Queries } from '../../src/projections/queries.js';
import { EventStore } from '../../src/events/store.js';
import { fromDb } from '../../src/projections/codec.js';
import { historyArb, PROFILE_NAMES, tempDb } from '../ledger/helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const M = 0x100000n;

function ledgerOf(cmds: unknown[], name = 'src.db'): string {
  const path = tempDb(name);
  const l = new Ledger(path);
  l.appendRaw(cmds);
  l.close();
  return path;
}

const strategy = (s: 'split-maps' | 'widen-unmaps' | 'flag'): Migration => ({ name: s, rules: [{ strategy: s }] });
const builtin = (s: StrategyName): Migration => ({ name: s, rules: [{ strategy: s }] });

async function migrated(src: string, m: Migration, opts = {}): Promise<{ r: MigrationResult; out: string }> {
  const out = join(dirname(src), `out-${Math.random().toString(36).slice(2)}.db`);
  const r = await migrate(src, out, m, opts);
  return { r, out };
}

function kinds(r: MigrationResult, k: string): number {
  return (r.counts as Record<string, number>)[k] ?? 0;
}

function withQueries<T>(path: string, f: (q: Queries) => T): T {
  const q = new Queries(path);
  try {
    return f(q);
  } finally {
    q.close();
  }
}

/** The 2011 case: OMAP maps a 1M buffer (one 1M page); 4K of it is unmapped. */
const omap = [
  { op: 'domain', domain: 'isp', profile: 'omap' },
  { op: 'map', domain: 'isp', iova: '0x60000000', paddr: '0x90000000', size: '1M', caller: 'isp', site: 'drivers/media/omap3isp/ispvideo.c:300' },
  { op: 'unmap', domain: 'isp', iova: '0x60042000', size: '4K', caller: 'isp', site: 'drivers/media/omap3isp/ispvideo.c:410' },
  { op: 'fault', domain: 'isp', iova: '0x60080000', device: 'omap3isp' },
  { op: 'unmap', domain: 'isp', iova: '0x60000000', size: '1M', caller: 'isp', site: 'drivers/media/omap3isp/ispvideo.c:420' },
];

/** Intel VT-d: a 2M-aligned 2M map is one 2M page; kvm unmaps 4K of it. */
const intel = [
  { op: 'domain', domain: 'gpu0', profile: 'intel-vtd' },
  { op: 'map', domain: 'gpu0', iova: '0x200000', paddr: '0x80000000', size: '2M', caller: 'vfio' },
  { op: 'unmap', domain: 'gpu0', iova: '0x201000', size: '4K', caller: 'kvm' },
];

/** The real VFIO pattern: map 8K, unmap it as two 4K pieces (4K pages on Intel). */
const vfio8k = [
  { op: 'domain', domain: 'gpu0', profile: 'intel-vtd' },
  { op: 'map', domain: 'gpu0', iova: '0x400000', paddr: '0x81000000', size: '8K', caller: 'vfio', site: 'drivers/vfio/vfio_iommu_type1.c:1502' },
  { op: 'unmap', domain: 'gpu0', iova: '0x400000', size: '4K', caller: 'vfio', site: 'drivers/vfio/vfio_iommu_type1.c:1090' },
  { op: 'unmap', domain: 'gpu0', iova: '0x401000', size: '4K', caller: 'vfio', site: 'drivers/vfio/vfio_iommu_type1.c:1090' },
];

/** KVM-style teardown: whole maps, then one unmap of the whole address space. */
const kvmTeardown = [
  { op: 'domain', domain: 'vm', profile: 'intel-vtd' },
  { op: 'map', domain: 'vm', iova: '0x0', paddr: '0x100000000', size: '2M', caller: 'kvm' },
  { op: 'map', domain: 'vm', iova: '0x40000000', paddr: '0x140000000', size: '1G', caller: 'kvm' },
  { op: 'map', domain: 'vm', iova: '0x80000000', paddr: '0x180000000', size: '16K', caller: 'kvm' },
  { op: 'unmap', domain: 'vm', iova: '0x0', size: String(1n << 48n), caller: 'kvm', site: 'virt/kvm/iommu.c:kvm_iommu_unmap_memslots' },
];

describe('callers: the analysis behind a migration', () => {
  it('classifies the VFIO 8K-as-two-4K pattern as cuts: harmless on 4K pages, over-unmaps with a larger page, refused by strict unmap', () => {
    const src = ledgerOf(vfio8k);
    const v = withQueries(src, (q) => q.callers().map(withWords)).find((c) => c.site.endsWith(':1090'))!;
    expect(v).toMatchObject({ unmaps: 2, cuts: 2, exact: 0, straddles: 0, readiness: 0, safePage: 0x1000n, largestPage: 0x1000n });
    expect(v.behaviours.legacy).toMatchObject({ overUnmaps: 0, leftMapped: 0 });
    expect(v.behaviours.strict.refused).toBe(2);
    expect(v.verdict.join('; ')).toContain('cuts a map 2 times; harmless on 4K pages, over-unmaps if that map used a page larger than 4K');
    expect(v.advice).toContain(
      'unmaps 4K pieces of 8K maps made by vfio at drivers/vfio/vfio_iommu_type1.c:1502: map in 4K pieces there, or unmap the whole 8K here',
    );
    expect(v.examples.map((e) => e.position)).toEqual([3, 4]);
  });

  it('measures the OMAP over-unmap under each behaviour and keeps straddles apart from cuts', () => {
    const src = ledgerOf([
      ...omap.slice(0, 3),
      { op: 'map', domain: 'isp', iova: '0x60100000', paddr: '0x91000000', size: '64K', caller: 'isp' },
      // crosses the edge of the 64K map: 32K inside, 32K outside
      { op: 'unmap', domain: 'isp', iova: '0x60108000', size: '64K', caller: 'isp', site: 'x.c:1' },
    ]);
    const all = withQueries(src, (q) => q.callers().map(withWords));
    const cut = all.find((c) => c.site.endsWith(':410'))!;
    expect(cut).toMatchObject({ cuts: 1, cutBytes: M - 0x1000n, largestPage: M, safePage: 0x1000n });
    expect(cut.behaviours.legacy).toMatchObject({ overUnmaps: 1, overBytes: M - 0x1000n });
    expect(cut.behaviours.split).toMatchObject({ overUnmaps: 0, leftMapped: 0 });
    expect(cut.behaviours.strict.refused).toBe(1);
    expect(cut.advice).toContain('unmaps 4K pieces of 1M maps made by isp at drivers/media/omap3isp/ispvideo.c:300');
    // The advice does not depend on how many examples are shown.
    expect(withQueries(src, (q) => q.callers({ examples: 0 }).map(withWords)).find((c) => c.site.endsWith(':410'))!.advice).toBe(cut.advice);
    const straddle = all.find((c) => c.site === 'x.c:1')!;
    expect(straddle).toMatchObject({ straddles: 1, cuts: 0, cutBytes: 0x8000n });
  });

  it("tells a miss caused by another unmap's over-unmap from a double unmap", () => {
    const src = ledgerOf([
      ...omap.slice(0, 3),
      { op: 'unmap', domain: 'isp', iova: '0x60080000', size: '4K', caller: 'isp2' }, // gone with the over-unmap
      { op: 'unmap', domain: 'isp', iova: '0x70000000', size: '4K', caller: 'isp3' }, // never mapped
    ]);
    const all = withQueries(src, (q) => q.callers().map(withWords));
    const after = all.find((c) => c.caller === 'isp2')!;
    expect(after).toMatchObject({ misses: 1, missesAfterOverUnmap: 1 });
    expect(after.examples[0]!.missedAfter).toBe(3);
    expect(after.advice).toBeUndefined();
    const never = all.find((c) => c.caller === 'isp3')!;
    expect(never).toMatchObject({ misses: 1, missesAfterOverUnmap: 0 });
    expect(never.advice).toContain('double unmaps');
  });

  it('counts a whole-address-space unmap over whole maps as symmetric', () => {
    const src = ledgerOf(kvmTeardown);
    const v = withQueries(src, (q) => q.callers().map(withWords)).find((c) => c.unmaps > 0)!;
    expect(v).toMatchObject({ spans: 1, cuts: 0, readiness: 1 });
  });
});

describe('migrate: worked scenarios', () => {
  it('OMAP 1M page, split-maps: verifies, the over-unmap is a bug fixed, the source is untouched', async () => {
    const src = ledgerOf(omap);
    const digest = createHash('sha256').update(readFileSync(src)).digest('hex');
    const { r, out } = await migrated(src, strategy('split-maps'));
    expect(r.passed).toBe(true);
    expect(r.fixed).toEqual({ 'over-unmap': 1, 'left-mapped': 0, refused: 0 });
    const fixed = r.problems.find((p) => p.kind === 'fixed')!;
    expect(fixed.position).toBe(3); // the 4K unmap that over-unmapped in the source
    expect(fixed.bytes).toBe(M - 0x1000n);
    // The fault that followed the over-unmap now hits a mapped page: that follows from the fix.
    expect(r.problems.find((p) => p.kind === 'fix-effect' && p.position === 4)!.detail).toBe(
      'the fault at 0x60080000 from omap3isp hits a page the new ledger has mapped (map new #4, made from #2) and the source had unmapped (use after collateral unmap at #3): the fix at #3 keeps it mapped',
    );
    expect(createHash('sha256').update(readFileSync(src)).digest('hex')).toBe(digest);
    // The final 1M unmap now spans a hole (the 4K piece is gone): it is issued as one unmap per
    // stretch of maps, so the legacy loop of the OMAP hardware, which stops at a hole, removes it all.
    expect(r.onSourceBehaviour.isp).toMatchObject({ overUnmaps: 0, leftMapped: 0 });
    expect(r.cost.isp!.after.unmaps).toBe(3); // 4K, then 264K and 756K around the 4K hole
    // The migrated map is three pieces; the 4K unmap now removes exactly its piece.
    const maps = withQueries(out, (q) => q.db.prepare("SELECT data FROM stored_events WHERE type = 'map'").all() as Array<{ data: string }>).map(
      (e) => JSON.parse(e.data).body as { iova: string; size: string },
    );
    expect(maps).toEqual([
      expect.objectContaining({ iova: '0x60000000', size: '0x42000' }),
      expect.objectContaining({ iova: '0x60042000', size: '0x1000' }),
      expect.objectContaining({ iova: '0x60043000', size: '0xbd000' }),
    ]);
    withQueries(out, (q) => {
      expect(q.findings({ kind: 'over-unmap' })).toHaveLength(0);
      // The fault at 0x60080000 was a use after collateral unmap; now the page is mapped.
      expect(q.faults()[0]!.cause).toBe('mapped');
      expect(q.callers().every((c) => c.readiness === 1)).toBe(true);
    });
    withQueries(src, (q) => expect(q.faults()[0]!.cause).toBe('use-after-collateral-unmap'));
  });

  it('a hole another caller made is still unmapped by the caller that believes it mapped (OMAP, two threads)', async () => {
    const src = ledgerOf([
      { op: 'domain', domain: 'isp', profile: 'omap' },
      { op: 'map', domain: 'isp', iova: '0x60000000', paddr: '0x90000000', size: '1M', caller: 'gst' },
      { op: 'unmap', domain: 'isp', iova: '0x60042000', size: '4K', caller: 'queue0' },
      { op: 'unmap', domain: 'isp', iova: '0x60000000', size: '1M', caller: 'gst' },
    ]);
    const { r, out } = await migrated(src, strategy('split-maps'));
    expect(r.problems.filter((p) => REGRESSIONS.has(p.kind))).toEqual([]);
    expect(r.passed).toBe(true);
    const unmaps = withQueries(
      out,
      (q) => q.db.prepare("SELECT data FROM stored_events WHERE type = 'unmap' ORDER BY position").all() as Array<{ data: string }>,
    ).map((e) => {
      const d = JSON.parse(e.data) as { body: { iova: string; size: string }; who: { caller: string } };
      return [d.who.caller, d.body.iova, d.body.size];
    });
    expect(unmaps).toEqual([
      ['queue0', '0x60042000', '0x1000'],
      ['gst', '0x60000000', '0x42000'],
      ['gst', '0x60042000', '0x1000'], // nothing is mapped there, but gst still meant it
      ['gst', '0x60043000', '0xbd000'],
    ]);
  });

  it('Intel 2M page, widen-unmaps: unmaps the whole 2M and maps back what vfio still needs, and shows the cost', async () => {
    const src = ledgerOf(intel);
    const { r, out } = await migrated(src, strategy('widen-unmaps'));
    expect(r.passed).toBe(true);
    const ev = withQueries(
      out,
      (q) =>
        q.db.prepare("SELECT type, data FROM stored_events WHERE type IN ('map','unmap') ORDER BY position").all() as Array<{ type: string; data: string }>,
    );
    const cmds = ev.map((e) => {
      const d = JSON.parse(e.data) as {
        body: { iova: string; size: string };
        who?: { caller?: string };
        from: { derivedFrom: { position: number; strategy: string } };
      };
      return [e.type, d.body.iova, d.body.size, d.who?.caller, d.from.derivedFrom.position];
    });
    expect(cmds).toEqual([
      ['map', '0x200000', '0x200000', 'vfio', 2],
      ['unmap', '0x200000', '0x200000', 'kvm', 3],
      ['map', '0x200000', '0x1000', 'vfio', 3],
      ['map', '0x202000', '0x1fe000', 'vfio', 3],
    ]);
    const c = r.cost.gpu0!;
    expect([c.before.maps, c.before.unmaps, c.after.maps, c.after.unmaps]).toEqual([1, 1, 3, 1]);
    // One 2M entry before; after, 4K + the rest in 4K pages (the 2M block cannot be rebuilt from unaligned pieces).
    expect(c.after.finalEntries.reduce((a, b) => a + b, 0)).toBeGreaterThan(c.before.finalEntries.reduce((a, b) => a + b, 0));
    expect(c.after.peakTableBytes).toBeGreaterThan(c.before.peakTableBytes);
    expect(r.fixed['over-unmap']).toBe(1);
  });

  it('the VFIO 8K pattern under split-maps maps two 4K pieces; nothing was over-unmapped, so nothing is a bug fixed', async () => {
    const { r, out } = await migrated(ledgerOf(vfio8k), strategy('split-maps'));
    expect(r.passed).toBe(true);
    expect(r.fixed).toEqual({ 'over-unmap': 0, 'left-mapped': 0, refused: 0 });
    expect(r.cost.gpu0!.after.maps).toBe(2);
    withQueries(out, (q) => expect(q.callers().find((c) => c.site.endsWith(':1090'))!.exact).toBe(2));
  });

  it('flag keeps the commands, reports each asymmetric unmap once, and fails', async () => {
    const { r } = await migrated(ledgerOf(vfio8k), strategy('flag'));
    expect(r.passed).toBe(false);
    expect(kinds(r, 'flagged')).toBe(2);
    expect(kinds(r, 'unmap-refused')).toBe(0); // folded into the flagged entries
    expect(r.problems.find((p) => p.kind === 'flagged')!.detail).toContain('strict unmap refuses it (EINVAL)');
  });

  it('a KVM-style unmap of the whole address space over whole maps needs no change', async () => {
    const { r } = await migrated(ledgerOf(kvmTeardown), strategy('flag'));
    expect(r.passed).toBe(true);
    expect(kinds(r, 'flagged')).toBe(0);
    // On the source's own (legacy) behaviour the loop stops at the first hole: reported, not hidden.
    expect(r.onSourceBehaviour.vm!.leftMapped).toBe(1);
  });

  it('--caller limits the migration; the other callers are kept and reported as not migrated', async () => {
    const src = ledgerOf([
      ...intel,
      { op: 'map', domain: 'gpu0', iova: '0x400000', paddr: '0x81000000', size: '8K', caller: 'dma' },
      { op: 'unmap', domain: 'gpu0', iova: '0x400000', size: '4K', caller: 'dma' },
    ]);
    const { r } = await migrated(src, strategy('widen-unmaps'), { caller: 'kvm' });
    expect(r.passed).toBe(true);
    expect(r.strategies).toMatchObject({ 'widen-unmaps': 1, keep: 3 });
    expect(kinds(r, 'not-migrated')).toBeGreaterThan(0);
    await expect(migrated(src, strategy('flag'), { caller: 'nobody' })).rejects.toThrow(/--caller "nobody": no command/);
  });

  it('every migrated event links to its source event; the output must be a new file', async () => {
    const src = ledgerOf(omap);
    const { out } = await migrated(src, strategy('split-maps'));
    const s = new EventStore(out, { readonly: true });
    const srcStore = new EventStore(src, { readonly: true });
    const srcTypes = new Map([...srcStore.read()].map((e) => [e.position, e.type]));
    for (const e of s.read()) {
      const link = (JSON.parse(e.data) as { from: { derivedFrom: { position: number } } }).from.derivedFrom;
      expect(srcTypes.get(link.position)).toBe(e.type);
    }
    s.close();
    srcStore.close();
    await expect(migrate(src, out, strategy('flag'))).rejects.toThrow(/exists/);
  });

  it('a custom transform that returns a bad command is named with its rule and source position; nothing is left behind', async () => {
    const src = ledgerOf(vfio8k);
    const out = join(dirname(src), 'bad.db');
    const m = defineMigration({
      name: 'bad',
      rules: [{ caller: 'vfio', strategy: (c) => (c.op === 'map' ? [{ op: 'map', iova: c.iova, size: 0n, paddr: c.paddr! }] : []) }],
    });
    // size 0 is a valid command that the core refuses, so this one verifies as a refused map (and
    // the unmaps it drops as unmaps that remove nothing)...
    const r = await migrate(src, out, m);
    expect(r.passed).toBe(false);
    expect(kinds(r, 'map-refused')).toBe(1);
    expect(r.problems.filter((p) => p.kind === 'unmap-empty').map((p) => [p.position, p.detail])).toEqual([
      [3, 'unmap 0x400000+4K is dropped (nothing is issued for it); the source removed 4K'],
      [4, 'unmap 0x401000+4K is dropped (nothing is issued for it); the source removed 4K'],
    ]);
    const out2 = join(dirname(src), 'bad2.db');
    const m2 = defineMigration({ name: 'bad2', rules: [{ strategy: (c) => [{ op: 'map', iova: c.iova, size: c.size, paddr: -1n }] }] });
    await expect(migrate(src, out2, m2)).rejects.toThrow(/bad2, custom:rules\[0\], source event 2, command 1/);
    expect(existsSync(out2)).toBe(false);
    expect(() => defineMigration({ name: 'x', rules: [{ strategy: 'split-map' as never }] })).toThrow(MigrationError);
  });
});

/** ../shared/repro/m.jsonl (issue 13, VT-d): map 0x200000+2M, unmap 4K of it, map it again, unmap 4K. */
const mjsonl = [
  { op: 'domain', domain: 'd', profile: 'intel-vtd' },
  { op: 'map', domain: 'd', iova: '0x200000', paddr: '0x40000000', size: '2M', caller: 'vfio' },
  { op: 'unmap', domain: 'd', iova: '0x200000', size: '4K', caller: 'vfio' },
  { op: 'map', domain: 'd', iova: '0x200000', paddr: '0x40000000', size: '2M', caller: 'vfio' },
  { op: 'unmap', domain: 'd', iova: '0x200000', size: '4K', caller: 'vfio' },
];

const regressions = (r: MigrationResult) => Object.fromEntries(Object.entries(r.counts).filter(([k]) => REGRESSIONS.has(k as never)));
const found1 = (r: MigrationResult, kind: string) =>
  r.problems.filter((p) => p.kind === kind).map((p) => ({ at: p.position, new: p.migratedPosition, caller: p.caller, ranges: p.ranges, detail: p.detail }));

describe('migrate: the verification (issue 13)', () => {
  it('m.jsonl under split-maps FAILS: the refused map, the unmap that removes nothing and the 2044K left mapped are named', async () => {
    const src = ledgerOf(mjsonl);
    const dir = dirname(src);
    const io = { o: '', e: '' };
    const cap = { out: (x: string) => (io.o += x), err: (x: string) => (io.e += x) };
    expect(await run(['--db', src, 'migrate', '--strategy', 'split-maps', '--out', join(dir, 'new.db'), '--fail-on-regression'], cap)).toBe(1);
    expect(io.e).toBe('iommu-ledger: --fail-on-regression: the migrated history does not verify (see the report)\n');
    const lines = io.o.split('\n');
    expect(lines.slice(1, 17)).toEqual([
      'strategies: split-maps 4',
      'FAIL 1. maps: 1 refused that the source stored as ok',
      'FAIL 2. unmaps: 1 removing nothing where the source removed something, 0 refused that the source carried out, 0 removing pages the source still maps',
      'FAIL 3. end state: 2044K left mapped where the source maps nothing, 0 missing where the source maps pages, 0 mapped elsewhere (1 range)',
      'ok   4. faults: 0 on a page unmapped where the source had it mapped, 0 on a page mapped where the source had it unmapped',
      'FAIL 5. intent at the end: 2044K believed mapped only in the new ledger, 0 only in the source (1 range)',
      'ok   6. symmetric: 0 flagged, 0 over-unmap, 0 leave pages mapped under strict unmap',
      '     bugs fixed: 0 (over-unmaps 0, unmaps that left pages mapped 0, refused unmaps 0)',
      '     cost: d: 2+2 -> 3+2 map+unmap calls, peak tables 12K -> 16K, 2 -> 1 invalidations',
      '  map refused at #4 (new #5), vfio: map 0x200000+2M is refused in the new ledger: EEXIST: 0x201000..0x400000 is already mapped (by #2, new #3); the source stored it as ok',
      '  unmap removes nothing at #5 (new #6), vfio: unmap 0x200000+4K removes nothing in the new ledger; the source removed 2M',
      "  left mapped at the end at #5 (new #6), vfio: d: 0x201000+2044K is still mapped at the end of the new ledger (map new #3, made from #2, by vfio), not in the source (removed by #5); in the source, #5 over-unmapped 2044K (stepped: the removed page ended where the caller's own map ended (the last step of a loop that consumes the returned size))",
      "  intent only in the new ledger at #5 (new #6), vfio: vfio believes 0x201000+2044K mapped at the end of d in the new ledger (map new #3, made from #2), not in the source (its intent there ended at #5); in the source, #5 over-unmapped 2044K (stepped: the removed page ended where the caller's own map ended (the last step of a loop that consumes the returned size))",
      '  vfio (d): 1 map refused, 1 unmap removes nothing, 2044K left mapped at the end, 2044K believed mapped only in the new ledger',
      expect.stringMatching(/^ {2}vfio: readiness 0% -> 50%; change: /),
      `FAILED: report in ${join(dir, 'new.report.md')} and ${join(dir, 'new.report.json')}`,
    ]);
    const md = readFileSync(join(dir, 'new.report.md'), 'utf8');
    expect(md).toContain('## Verdict: FAILED');
    expect(md).toContain('| d | vfio | 1 | 1 | 0 | 0 | 2044K / 0 / 0 | 0 | 2044K / 0 | 0 | 0 | 0 |');
    // The JSON report says the same.
    const js = JSON.parse(readFileSync(join(dir, 'new.report.json'), 'utf8')) as { result: MigrationResult & { bytes: Record<string, string> } };
    expect(js.result.passed).toBe(false);
    expect(js.result.counts).toEqual({ 'map-refused': 1, 'unmap-empty': 1, 'end-mapped': 1, 'intent-added': 1 });
    expect(js.result.bytes).toMatchObject({ 'end-mapped': '0x1ff000', 'intent-added': '0x1ff000' });
    expect(js.result.fixed).toEqual({ 'over-unmap': 0, 'left-mapped': 0, refused: 0 });
    expect(js.result.problems.map((p) => [p.kind, p.position, p.migratedPosition])).toEqual([
      ['map-refused', 4, 5],
      ['unmap-empty', 5, 6],
      ['end-mapped', 5, 6],
      ['intent-added', 5, 6],
    ]);
    expect(js.result.byCaller).toEqual([
      {
        domain: 'd',
        caller: 'vfio',
        regressions: { 'map-refused': 1, 'unmap-empty': 1, 'end-mapped': 1, 'intent-added': 1 },
        bytes: { 'end-mapped': '0x1ff000', 'intent-added': '0x1ff000' },
        fixed: 0,
        notMigrated: 0,
      },
    ]);
  });

  it('m.jsonl under keep changes nothing: 0 fixed, PASSED; what strict unmap refuses is reported as not migrated', async () => {
    const src = ledgerOf(mjsonl);
    const { r } = await migrated(src, { name: 'keep', rules: [{ strategy: 'keep' }] });
    expect(r.passed).toBe(true);
    expect(r.fixed).toEqual({ 'over-unmap': 0, 'left-mapped': 0, refused: 0 });
    expect(regressions(r)).toEqual({});
    expect(r.counts).toEqual({ 'not-migrated': 5 });
    expect(r.notMigrated).toEqual({ 'unmap-refused': 2, 'map-refused': 1, 'end-mapped': 1, 'intent-added': 1 });
    expect(r.problems.map((p) => [p.position, p.detail.split(':')[0]])).toEqual([
      [3, 'unmap-refused'],
      [4, 'map-refused'],
      [5, 'unmap-refused'],
      [5, 'end-mapped'],
      [5, 'intent-added'],
    ]);
  });

  it("widen-unmaps passes honestly where it works: kvm's over-unmap of vfio's 2M page is fixed, and what differs at the end follows from that fix", async () => {
    const { r } = await migrated(ledgerOf(intel), strategy('widen-unmaps'));
    expect(r.passed).toBe(true);
    expect(regressions(r)).toEqual({});
    expect(r.fixed).toEqual({ 'over-unmap': 1, 'left-mapped': 0, refused: 0 });
    expect(found1(r, 'fixed')).toEqual([
      {
        at: 3,
        new: 3,
        caller: 'kvm',
        ranges: [
          { iova: 0x200000n, size: 0x1000n },
          { iova: 0x202000n, size: 0x1fe000n },
        ],
        detail:
          'unmap 0x201000+4K over-unmapped 0x200000+4K, 0x202000+2040K in the source; the new ledger removes only what was asked and keeps those pages mapped',
      },
    ]);
    expect(found1(r, 'fix-effect').map((p) => p.detail)).toEqual([
      'gpu0: 0x200000+4K, 0x202000+2040K is still mapped at the end of the new ledger (map new #4, made from #3, by vfio), not in the source (removed by #3): the fix at #3 keeps it mapped',
    ]);
  });

  it('a left-mapped unmap fixed by cutting it at its hole; the map the source refused there now succeeds, as a consequence', async () => {
    const src = ledgerOf([
      { op: 'domain', domain: 'g', profile: 'intel-vtd' },
      { op: 'map', domain: 'g', iova: '0x100000', paddr: '0x100000', size: '4K', caller: 'a' },
      { op: 'map', domain: 'g', iova: '0x300000', paddr: '0x300000', size: '4K', caller: 'a' },
      { op: 'unmap', domain: 'g', iova: '0x100000', size: '2052K', caller: 'a' },
      { op: 'map', domain: 'g', iova: '0x300000', paddr: '0x500000', size: '4K', caller: 'a' },
      { op: 'unmap', domain: 'g', iova: '0x300000', size: '4K', caller: 'a' },
    ]);
    const { r } = await migrated(src, strategy('split-maps'));
    expect(r.passed).toBe(true);
    expect(r.fixed).toEqual({ 'over-unmap': 0, 'left-mapped': 1, refused: 0 });
    expect(r.problems.map((p) => [p.kind, p.position, p.detail])).toEqual([
      ['fixed', 4, 'unmap 0x100000+2052K left 0x300000+4K mapped in the source; the new ledger unmaps it as asked'],
      ['fix-effect', 5, 'map 0x300000+4K succeeds; in the source it collided with pages that unmap #4 left mapped (fixed)'],
    ]);
  });

  it('a fix that a later regression touches is withdrawn, and what differs at the end is named', async () => {
    const src = ledgerOf([
      ...intel,
      // vfio maps the range again: the source's kernel had removed it all, the new ledger keeps vfio's pieces.
      { op: 'map', domain: 'gpu0', iova: '0x200000', paddr: '0x90000000', size: '2M', caller: 'vfio' },
    ]);
    const { r } = await migrated(src, strategy('split-maps'));
    expect(r.passed).toBe(false);
    expect(regressions(r)).toEqual({ 'map-refused': 1, 'end-unmapped': 1, 'end-moved': 1 });
    expect(r.fixed).toEqual({ 'over-unmap': 0, 'left-mapped': 0, refused: 0 });
    expect(r.problems.map((p) => [p.kind, p.position, p.detail])).toEqual([
      [
        'withdrawn',
        3,
        'unmap 0x201000+4K over-unmapped 0x200000+4K, 0x202000+2040K in the source; the new ledger removes only what was asked and keeps those pages mapped; not a fix: map-refused at #4 (new #6) touches those pages',
      ],
      [
        'map-refused',
        4,
        'map 0x200000+2M is refused in the new ledger: EEXIST: 0x202000..0x400000 is already mapped (by #2, new #4); the source stored it as ok',
      ],
      [
        'end-moved',
        4,
        'gpu0: 0x200000+4K, 0x202000+2040K is mapped at the end of both, to 0x90000000 in the source (map #4) and to 0x80000000 in the new ledger (map new #2, made from #2)',
      ],
      ['end-unmapped', 4, 'gpu0: 0x201000+4K is mapped at the end of the source (map #4 by vfio), not in the new ledger (removed by new #5, made from #3)'],
    ]);
  });

  it('a kept command that collides with what a fix kept is not migrated, and the fix stands (--caller)', async () => {
    const src = ledgerOf([...intel, { op: 'unmap', domain: 'gpu0', iova: '0x203000', size: '4K', caller: 'other' }]);
    const { r } = await migrated(src, strategy('widen-unmaps'), { caller: 'kvm' });
    expect(r.passed).toBe(true);
    expect(r.fixed['over-unmap']).toBe(1);
    expect(r.notMigrated).toEqual({ 'unmap-refused': 1 });
    expect(r.problems.find((p) => p.kind === 'not-migrated')!.detail).toBe(
      'unmap-refused: unmap 0x203000+4K is refused under strict unmap: EINVAL: the range cuts through the mapping 0x202000..0x400000 made by #3, new #5; the source carried it out',
    );
  });

  it('an unmap a transform drops: it removes nothing, the fault after it hits a mapped page, the page stays mapped and intended', async () => {
    const src = ledgerOf([
      { op: 'domain', domain: 'g', profile: 'intel-vtd' },
      { op: 'map', domain: 'g', iova: '0x100000', paddr: '0x100000', size: '4K', caller: 'a' },
      { op: 'unmap', domain: 'g', iova: '0x100000', size: '4K', caller: 'a' },
      { op: 'fault', domain: 'g', iova: '0x100010', device: 'nic' },
    ]);
    const drop = defineMigration({
      name: 'drop unmaps',
      rules: [{ strategy: (c) => (c.op === 'unmap' ? [] : [{ op: 'map', iova: c.iova, size: c.size, paddr: c.paddr! }]) }],
    });
    const { r } = await migrated(src, drop);
    expect(r.passed).toBe(false);
    expect(r.problems.map((p) => [p.kind, p.position, p.caller, p.detail])).toEqual([
      ['unmap-empty', 3, 'a', 'unmap 0x100000+4K is dropped (nothing is issued for it); the source removed 4K'],
      ['end-mapped', 3, 'a', 'g: 0x100000+4K is still mapped at the end of the new ledger (map new #2, made from #2, by a), not in the source (removed by #3)'],
      [
        'intent-added',
        3,
        'a',
        'a believes 0x100000+4K mapped at the end of g in the new ledger (map new #2, made from #2), not in the source (its intent there ended at #3)',
      ],
      [
        'fault-mapped',
        4,
        'a',
        'the fault at 0x100010 from nic hits a page the new ledger has mapped (map new #2, made from #2) and the source had unmapped (use after unmap at #3); the pages differ since #3 (nothing in the new ledger)',
      ],
    ]);
  });

  it('a map a transform drops: the fault hits an unmapped page, the page is missing at the end, the intent lost', async () => {
    const src = ledgerOf([
      { op: 'domain', domain: 'g', profile: 'intel-vtd' },
      { op: 'map', domain: 'g', iova: '0x100000', paddr: '0x100000', size: '4K', caller: 'a' },
      { op: 'fault', domain: 'g', iova: '0x100010', device: 'nic' },
    ]);
    const drop = defineMigration({ name: 'drop maps', rules: [{ strategy: () => [] }] });
    const { r } = await migrated(src, drop);
    expect(r.passed).toBe(false);
    expect(regressions(r)).toEqual({ 'fault-unmapped': 1, 'end-unmapped': 1, 'intent-lost': 1 });
    expect(r.problems.find((p) => p.kind === 'fault-unmapped')!.detail).toBe(
      'the fault at 0x100010 from nic hits a page the new ledger has unmapped (never mapped) and the source had mapped (map #2); the pages differ since #2 (nothing in the new ledger)',
    );
  });
});

describe('migrate on the command line', () => {
  it('runs a TypeScript script, writes the Markdown and JSON reports, and --fail-on-regression sets the exit code', async () => {
    const src = ledgerOf(vfio8k);
    const dir = dirname(src);
    const script = join(dir, 'm.ts');
    const define = join(here, '../../src/migrate/define.js').replace(/\\/g, '/');
    writeFileSync(
      script,
      `import { defineMigration } from '${define}';\nexport default defineMigration({ name: 'vfio pieces', rules: [{ caller: 'vfio', strategy: 'split-maps' }] });\n`,
    );
    const io = { o: '', e: '' };
    const cap = { out: (s: string) => (io.o += s), err: (s: string) => (io.e += s) };
    const code = await run(['--db', src, 'migrate', '--script', script, '--out', join(dir, 'a.db'), '--fail-on-regression'], cap);
    expect(io.e).toBe('');
    expect(code).toBe(0);
    expect(io.o).toContain('PASSED');
    const md = readFileSync(join(dir, 'a.report.md'), 'utf8');
    expect(md).toContain('## Verdict: PASSED');
    expect(md).toContain('map in 4K pieces there, or unmap the whole 8K here');
    const js = JSON.parse(readFileSync(join(dir, 'a.report.json'), 'utf8')) as { result: { passed: boolean }; sites: unknown[] };
    expect(js.result.passed).toBe(true);
    expect(js.sites.length).toBeGreaterThan(0);

    const failing = await run(['--db', src, 'migrate', '--strategy', 'flag', '--out', join(dir, 'b.db'), '--fail-on-regression'], cap);
    expect(failing).toBe(1);
    expect(readFileSync(join(dir, 'b.report.md'), 'utf8')).toContain('## Verdict: FAILED');

    writeFileSync(join(dir, 'typo.mjs'), `export default { name: 't', rules: [{ strategy: 'split-map' }] };\n`);
    io.e = '';
    expect(await run(['--db', src, 'migrate', '--script', join(dir, 'typo.mjs'), '--out', join(dir, 'c.db')], cap)).toBe(2);
    expect(io.e).toContain('rules[0].strategy: "split-map" is not a strategy');
    expect(existsSync(join(dir, 'c.db'))).toBe(false);
    expect(await run(['--db', src, 'migrate', '--strategy', 'flag', '--script', script, '--out', join(dir, 'd.db')], cap)).toBe(2);
  });
});

/** Histories where unmaps are drawn relative to earlier maps: exact, cuts, straddles, whole-space. */
function relatedHistoryArb(profile: string) {
  const op = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('map' as const),
        slot: fc.integer({ min: 0, max: 15 }),
        pages: fc.constantFrom(1, 2, 4, 16, 512),
        caller: fc.constantFrom('a', 'b'),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('unmap' as const),
        slot: fc.integer({ min: 0, max: 15 }),
        off: fc.integer({ min: 0, max: 600 }),
        pages: fc.integer({ min: 1, max: 700 }),
        caller: fc.constantFrom('a', 'b'),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('exact' as const), slot: fc.integer({ min: 0, max: 15 }), caller: fc.constantFrom('a', 'b') }) },
  );
  return fc.array(op, { minLength: 1, maxLength: 40, size: 'max' }).map((ops) => {
    const size = new Map<number, number>();
    const cmds: unknown[] = [{ op: 'domain', domain: 'd', profile }];
    const base = (slot: number) => 0x4000_0000 + slot * 0x40_0000; // 4M slots, 2M-aligned
    for (const o of ops) {
      if (o.kind === 'map') {
        size.set(o.slot, o.pages);
        cmds.push({ op: 'map', domain: 'd', iova: hx(base(o.slot)), paddr: hx(0x1_0000_0000 + base(o.slot)), size: hx(o.pages * 0x1000), caller: o.caller });
      } else if (o.kind === 'exact') {
        cmds.push({ op: 'unmap', domain: 'd', iova: hx(base(o.slot)), size: hx((size.get(o.slot) ?? 1) * 0x1000), caller: o.caller });
      } else {
        cmds.push({ op: 'unmap', domain: 'd', iova: hx(base(o.slot) + o.off * 0x1000), size: hx(o.pages * 0x1000), caller: o.caller });
      }
    }
    return cmds;
  });
}
const hx = (n: number) => `0x${n.toString(16)}`;

type Row = { position: number; type: string; body: Record<string, unknown>; who?: { caller?: string }; from?: { derivedFrom?: { position: number } } };

function eventsOf(path: string): Row[] {
  return withQueries(path, (q) =>
    (q.db.prepare('SELECT position, type, data FROM stored_events ORDER BY position').all() as Array<{ position: bigint; type: string; data: string }>).map(
      (e) => ({
        position: Number(e.position),
        type: e.type,
        ...(JSON.parse(e.data) as Omit<Row, 'position' | 'type'>),
      }),
    ),
  );
}

/** Pages (4K, as hex text) mapped at the end of a ledger, with where each points. */
function endPages(path: string): Map<string, string> {
  return withQueries(path, (q) => {
    const out = new Map<string, string>();
    const rows = q.db.prepare('SELECT iova, iova_last, paddr FROM runs WHERE valid_to IS NULL').safeIntegers(true).all() as Array<{
      iova: bigint;
      iova_last: bigint;
      paddr: bigint;
    }>;
    for (const r of rows) {
      const s = fromDb(r.iova);
      for (let a = s; a <= fromDb(r.iova_last); a += 0x1000n) out.set(a.toString(16), (fromDb(r.paddr) + (a - s)).toString(16));
    }
    return out;
  });
}

/** Pages each caller intends at the end of a ledger ("caller page"). */
function endIntent(path: string): Set<string> {
  return withQueries(path, (q) => {
    const out = new Set<string>();
    const rows = q.db.prepare('SELECT caller, iova, iova_last FROM intent WHERE valid_to IS NULL').safeIntegers(true).all() as Array<{
      caller: string;
      iova: bigint;
      iova_last: bigint;
    }>;
    for (const r of rows) for (let a = fromDb(r.iova); a <= fromDb(r.iova_last); a += 0x1000n) out.add(`${r.caller} ${a.toString(16)}`);
    return out;
  });
}

function pagesOf(ps: MigrationResult['problems'], prefix = ''): Set<string> {
  const out = new Set<string>();
  for (const p of ps)
    for (const r of p.ranges) for (let a = r.iova; a < r.iova + r.size; a += 0x1000n) out.add(`${prefix ? `${p.caller} ` : ''}${a.toString(16)}`);
  return out;
}

/**
 * What the verification must find, computed here from the two ledgers' stored events and
 * projections, independently of the engine: source maps stored ok whose new maps are refused,
 * source unmaps that removed something whose new unmaps remove nothing, pages mapped differently
 * at the end, callers' intent that differs at the end, faults whose page is mapped in one ledger
 * only.
 */
/** The runs a ledger stored (one domain), to tell the pages mapped just after any position. */
function runsOf(path: string): Array<{ start: bigint; last: bigint; from: number; to: number }> {
  return withQueries(path, (q) =>
    (
      q.db.prepare('SELECT iova, iova_last, valid_from, valid_to FROM runs').safeIntegers(true).all() as Array<{
        iova: bigint;
        iova_last: bigint;
        valid_from: bigint;
        valid_to: bigint | null;
      }>
    ).map((r) => ({
      start: fromDb(r.iova),
      last: fromDb(r.iova_last),
      from: Number(r.valid_from),
      to: r.valid_to === null ? Infinity : Number(r.valid_to),
    })),
  );
}

/** The 4K pages (hex text) mapped just after event `at`, with the event that later removed each (Infinity: never). */
function pagesAfter(runs: ReturnType<typeof runsOf>, at: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of runs) if (r.from <= at && at < r.to) for (let a = r.start; a <= r.last; a += 0x1000n) out.set(a.toString(16), r.to);
  return out;
}

function oracle(src: string, out: string) {
  const srcEv = eventsOf(src);
  const outEv = eventsOf(out);
  const sRuns = runsOf(src);
  const oRuns = runsOf(out);
  const outFrom = new Map(outEv.map((e) => [e.position, e.from?.derivedFrom?.position]));
  const srcBy = new Map(srcEv.map((e) => [e.position, e]));
  /** Unmaps that removed something in the source and nothing in the new ledger, but whose pages the new ledger had already removed, by an unmap made from an unmap of the same caller. */
  const exempt = new Set<number>();
  /** Per source unmap: pages the new ledger removed there outside the request that the source still maps after it. */
  const early = new Map<number, Set<string>>();
  let lastOut = 0;
  const made = new Map<number, Row[]>();
  for (const e of outEv) {
    const from = e.from?.derivedFrom?.position;
    if (from !== undefined) made.set(from, [...(made.get(from) ?? []), e]);
  }
  const refusedMaps = new Set<number>();
  const emptyUnmaps = new Set<number>();
  const faults = new Set<number>();
  const srcFaults = withQueries(src, (q) => new Map(q.faults().map((f) => [f.position, f.cause])));
  const outFaults = withQueries(out, (q) => new Map(q.faults().map((f) => [f.position, f.cause])));
  for (const e of srcEv) {
    const ds = made.get(e.position) ?? [];
    const outBefore = lastOut;
    for (const d of ds) lastOut = Math.max(lastOut, d.position);
    if (e.type === 'unmap') {
      const sBefore = pagesAfter(sRuns, e.position - 1);
      const sAfter = pagesAfter(sRuns, e.position);
      const oBefore = pagesAfter(oRuns, outBefore);
      const oAfter = pagesAfter(oRuns, lastOut);
      const start = BigInt(e.body.iova as string);
      const end = start + BigInt(e.body.size as string);
      const inRequest = (pg: string) => BigInt(`0x${pg}`) >= start && BigInt(`0x${pg}`) < end;
      const ahead = new Set([...oBefore.keys()].filter((pg) => !oAfter.has(pg) && !inRequest(pg) && sAfter.has(pg)));
      if (ahead.size) early.set(e.position, ahead);
      const srcRemoved = [...sBefore.keys()].filter((pg) => !sAfter.has(pg));
      const removedBySameCaller = (pg: string) => {
        // The new ledger's last removal of the page, up to now: an unmap made from an unmap of the same caller.
        const ends = oRuns.filter((r) => r.to <= lastOut && BigInt(`0x${pg}`) >= r.start && BigInt(`0x${pg}`) <= r.last).map((r) => r.to);
        if (!ends.length) return false;
        const by = srcBy.get(outFrom.get(Math.max(...ends)) ?? -1);
        return by?.type === 'unmap' && by.who?.caller === e.who?.caller;
      };
      if (srcRemoved.length && srcRemoved.every((pg) => !oAfter.has(pg) && removedBySameCaller(pg))) exempt.add(e.position);
    }
    if (e.type === 'map' || e.type === 'unmap') {
      if (ds.some((d) => d.type === 'map' && d.body.ok === false) && !(e.type === 'map' && e.body.ok === false)) refusedMaps.add(e.position);
      const unmaps = ds.filter((d) => d.type === 'unmap');
      const removed = unmaps.reduce((a, d) => a + BigInt(d.body.unmapped as string), 0n);
      if (e.type === 'unmap' && BigInt(e.body.unmapped as string) > 0n && !unmaps.some((d) => d.body.ok === false) && removed === 0n)
        emptyUnmaps.add(e.position);
    }
    if (e.type === 'fault') {
      const mine = outFaults.get(ds[0]!.position);
      if ((srcFaults.get(e.position) === 'mapped') !== (mine === 'mapped')) faults.add(e.position);
    }
  }
  const a = endPages(src);
  const b = endPages(out);
  const pages = new Set<string>();
  for (const [k, v] of a) if (b.get(k) !== v) pages.add(k);
  for (const k of b.keys()) if (!a.has(k)) pages.add(k);
  const ia = endIntent(src);
  const ib = endIntent(out);
  const intent = new Set<string>([...ia].filter((x) => !ib.has(x)).concat([...ib].filter((x) => !ia.has(x))));
  return { refusedMaps, emptyUnmaps, exempt, early, faults, pages, intent, sRuns, srcBy };
}

const subset = (a: Set<string>, b: Set<string>) => [...a].filter((x) => !b.has(x));

/**
 * The verdict against the oracle: every regression the oracle finds is reported (or follows from
 * a fix the report lists), nothing else is, and the run passes only when nothing regressed.
 */
function checkAgainstOracle(src: string, out: string, r: MigrationResult): void {
  const o = oracle(src, out);
  const of = (k: string) => r.problems.filter((p) => p.kind === k);
  const effects = of('fix-effect');
  expect(new Set(of('map-refused').map((p) => p.position))).toEqual(o.refusedMaps);
  // Every unmap that removes nothing where the source removed something is reported, unless the
  // new ledger had already removed those pages by an unmap of the same caller (a teardown that
  // went ahead of the source); nothing else is.
  const empty = new Set(of('unmap-empty').map((p) => p.position));
  expect(subset(new Set([...empty].map(String)), new Set([...o.emptyUnmaps].map(String)))).toEqual([]);
  expect([...o.emptyUnmaps].filter((p) => !empty.has(p) && !o.exempt.has(p))).toEqual([]);
  // Pages reported as removed too early were removed at that event in the new ledger, outside its request, and the source still mapped them.
  for (const p of of('unmap-early')) expect(subset(pagesOf([p]), o.early.get(p.position) ?? new Set())).toEqual([]);
  const faultPositions = new Set(
    [...of('fault-unmapped'), ...of('fault-mapped'), ...effects.filter((p) => p.detail.startsWith('the fault'))].map((p) => p.position),
  );
  expect(faultPositions).toEqual(o.faults);
  // Pages that differ at the end: each is a reported regression or follows from a fix; no other page is reported.
  const endReported = pagesOf([...of('end-mapped'), ...of('end-unmapped'), ...of('end-moved')]);
  expect(subset(endReported, o.pages)).toEqual([]);
  expect(subset(o.pages, new Set([...endReported, ...pagesOf(effects)]))).toEqual([]);
  const intentReported = pagesOf([...of('intent-added'), ...of('intent-lost')], 'caller');
  expect(subset(intentReported, o.intent)).toEqual([]);
  expect(subset(o.intent, new Set([...intentReported, ...pagesOf(effects, 'caller')]))).toEqual([]);
  expect(r.passed).toBe([...REGRESSIONS].every((k) => !r.counts[k]));
  if (r.passed) {
    expect(o.refusedMaps.size).toBe(0);
    expect([...o.emptyUnmaps].filter((p) => !o.exempt.has(p))).toEqual([]);
    // Pages removed ahead of the source: the source removes each later, by an unmap of the same caller.
    for (const [p, pages] of o.early) {
      for (const pg of pages) {
        const run = o.sRuns.find((x) => x.from <= p && p < x.to && BigInt(`0x${pg}`) >= x.start && BigInt(`0x${pg}`) <= x.last)!;
        const by = o.srcBy.get(run.to);
        expect([by?.type, by?.who?.caller]).toEqual(['unmap', o.srcBy.get(p)!.who?.caller]);
      }
    }
    expect(subset(o.pages, pagesOf(effects))).toEqual([]);
  }
}

/**
 * Counterexamples fast-check found (split unmap stops at a hole, so the source leaves a map mapped
 * and a later map collides with it; the migration issues that map in pieces): kept as examples.
 */
const found: unknown[][] = [
  [
    { op: 'domain', domain: 'd0', profile: 'arm-lpae-4k' },
    { op: 'map', domain: 'd0', iova: '0x409e2000', paddr: '0x8009e2000', size: '0x10000', caller: 'vfio' },
    { op: 'unmap', domain: 'd0', iova: '0x40600000', size: '0x400000', caller: 'vfio' },
    { op: 'map', domain: 'd0', iova: '0x409f1000', paddr: '0x8009f1000', size: '0x10000', caller: 'vfio' },
    { op: 'unmap', domain: 'd0', iova: '0x40800000', size: '0x200000', caller: 'vfio' },
  ],
  [
    { op: 'domain', domain: 'd0', profile: 'arm-lpae-4k' },
    { op: 'map', domain: 'd0', iova: '0x40001000', paddr: '0x800001000', size: '0x1000', caller: 'vfio' },
    { op: 'unmap', domain: 'd0', iova: '0x40000000', size: '0x200000', caller: 'vfio' },
    { op: 'map', domain: 'd0', iova: '0x40000000', paddr: '0x800000000', size: '0x10000', caller: 'vfio' },
    { op: 'unmap', domain: 'd0', iova: '0x40000000', size: '0x1000', caller: 'vfio' },
    { op: 'fault', domain: 'd0', iova: '0x40000010', device: '0000:00:02.0' },
  ],
];

describe('migrate: properties', () => {
  for (const profile of PROFILE_NAMES) {
    for (const name of ['split-maps', 'widen-unmaps', 'unmap-as-mapped'] as const) {
      it(`${name}: the verdict finds every regression an independent comparison of the two ledgers finds, and nothing else (${profile})`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.oneof(relatedHistoryArb(profile), historyArb(profile, 30)), async (cmds) => {
            const src = ledgerOf(cmds as unknown[]);
            const { r, out } = await migrated(src, builtin(name));
            checkAgainstOracle(src, out, r);
            // Under strict unmap nothing the migration issues over-unmaps or leaves pages mapped
            // (but for an unmap it kept as it is and flagged: unmap-as-mapped keeps one that reaches another caller's map).
            const flagged = new Set(r.problems.filter((p) => p.kind === 'flagged').map((p) => p.position));
            const from = new Map(eventsOf(out).map((e) => [e.position, e.from?.derivedFrom?.position]));
            // An unmap the hardware itself refused in the source (e.g. 4K on a 64K granule: EINVAL)
            // is no migration's doing: it stays refused. (Found when the sweep reached arm-lpae-64k.)
            const refusedInSource = new Set(
              eventsOf(src)
                .filter((e) => e.type === 'unmap' && (e as unknown as { body: { ok: boolean } }).body.ok === false)
                .map((e) => e.position),
            );
            withQueries(out, (q) => {
              expect(q.findings({ kind: 'over-unmap' })).toEqual([]);
              expect(
                q.findings({ kind: 'left-mapped' }).filter((f) => !flagged.has(from.get(f.position) ?? -1) && !refusedInSource.has(from.get(f.position) ?? -1)),
              ).toEqual([]);
            });
          }),
          { numRuns: Number(process.env.MIGRATE_RUNS ?? 25), examples: profile === 'arm-lpae-4k' ? found.map((cmds) => [cmds] as [unknown[]]) : [] },
        );
      }, 120_000);
    }
    it(`keep changes nothing, passes and fixes nothing (${profile})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.oneof(relatedHistoryArb(profile), historyArb(profile, 30)), async (cmds) => {
          const src = ledgerOf(cmds as unknown[]);
          const { r, out } = await migrated(src, { name: 'keep', rules: [{ strategy: 'keep' }] });
          expect(r.passed).toBe(true);
          expect(r.fixed).toEqual({ 'over-unmap': 0, 'left-mapped': 0, refused: 0 });
          expect(r.problems.filter((p) => p.kind === 'fixed' || p.kind === 'fix-effect')).toEqual([]);
          // Its differences (strict unmap refuses what the source did) are all reported as not migrated.
          const o = oracle(src, out);
          expect(r.notMigrated['map-refused'] ?? 0).toBe(o.refusedMaps.size);
          expect(r.notMigrated['unmap-empty'] ?? 0).toBe(o.emptyUnmaps.size);
        }),
        { numRuns: Number(process.env.MIGRATE_RUNS ?? 25) },
      );
    }, 120_000);
  }
});

/** Every stored map and unmap of a ledger, as [type, iova, size, caller, unmapped, ok] (hex text as stored). */
function commandsOf(path: string): Array<[string, string, string, string | undefined, string | undefined, boolean | undefined]> {
  return eventsOf(path)
    .filter((e) => e.type === 'map' || e.type === 'unmap')
    .map((e) => [e.type, e.body.iova as string, e.body.size as string, e.who?.caller, e.body.unmapped as string | undefined, e.body.ok as boolean | undefined]);
}

/** A VFIO-like teardown on AMD v1: map 0x300000+8M, then 4K unmaps, each starting where the last removed page ended. */
function amdTeardown(paddr: string, steps: string[]): unknown[] {
  return [
    { op: 'domain', domain: 'as1', profile: 'amd-v1' },
    { op: 'map', domain: 'as1', iova: '0x300000', paddr, size: '8M', caller: 'vfio-dma' },
    ...steps.map((iova) => ({ op: 'unmap', domain: 'as1', iova, size: '4K', caller: 'vfio-dma' })),
  ];
}

describe('migrate --strategy unmap-as-mapped (callers that step by the returned size)', () => {
  it('m.jsonl PASSES: each 4K unmap becomes an unmap of the whole 2M map; 0 refused, 0 over-unmaps, nothing mapped at the end, as in the source', async () => {
    const src = ledgerOf(mjsonl);
    const dir = dirname(src);
    const io = { o: '', e: '' };
    const cap = { out: (x: string) => (io.o += x), err: (x: string) => (io.e += x) };
    // callers recommends it for this caller.
    expect(withQueries(src, (q) => q.callers().map(withWords))[0]!.advice).toBe(
      'vfio steps by the returned size (correct under the 2011 semantics): to make it symmetric, unmap each map as it was mapped — migrate --strategy unmap-as-mapped --caller vfio',
    );
    expect(
      await run(['--db', src, 'migrate', '--strategy', 'unmap-as-mapped', '--caller', 'vfio', '--out', join(dir, 'uam.db'), '--fail-on-regression'], cap),
    ).toBe(0);
    expect(io.e).toBe('');
    expect(io.o.split('\n')).toEqual([
      `migrated 5 events of ${src} by 'unmap-as-mapped' (caller vfio only) into ${join(dir, 'uam.db')}: 5 events (the source is unchanged)`,
      'strategies: unmap-as-mapped 4',
      'ok   1. maps: 0 refused that the source stored as ok',
      'ok   2. unmaps: 0 removing nothing where the source removed something, 0 refused that the source carried out, 0 removing pages the source still maps',
      'ok   3. end state: 0 left mapped where the source maps nothing, 0 missing where the source maps pages, 0 mapped elsewhere',
      'ok   4. faults: 0 on a page unmapped where the source had it mapped, 0 on a page mapped where the source had it unmapped',
      'ok   5. intent at the end: 0 believed mapped only in the new ledger, 0 only in the source',
      'ok   6. symmetric: 0 flagged, 0 over-unmap, 0 leave pages mapped under strict unmap',
      '     bugs fixed: 0 (over-unmaps 0, unmaps that left pages mapped 0, refused unmaps 0)',
      '     cost: d: 2+2 -> 2+2 map+unmap calls, peak tables 12K -> 12K, 2 -> 2 invalidations',
      '     unmap-as-mapped: 2 unmaps: 2 made whole (2 whole maps unmapped), 0 dropped (0 whose pages were already unmapped in the new ledger, 0 that removed nothing in the source)',
      "  vfio: readiness 0% -> 100%; change: vfio steps by the returned size (correct under the 2011 semantics): to make it symmetric, unmap each map as it was mapped — migrate --strategy unmap-as-mapped --caller vfio (the migration unmaps each map whole where the source's unmap first removed pages of it, and drops the steps after it)",
      `PASSED: report in ${join(dir, 'uam.report.md')} and ${join(dir, 'uam.report.json')}`,
      '',
    ]);
    const out = join(dir, 'uam.db');
    expect(commandsOf(out)).toEqual([
      ['map', '0x200000', '0x200000', 'vfio', undefined, true],
      ['unmap', '0x200000', '0x200000', 'vfio', '0x200000', true],
      ['map', '0x200000', '0x200000', 'vfio', undefined, true],
      ['unmap', '0x200000', '0x200000', 'vfio', '0x200000', true],
    ]);
    withQueries(out, (q) => {
      expect(q.findings({ kind: 'over-unmap' })).toEqual([]);
      expect(q.callers().every((c) => c.readiness === 1)).toBe(true);
    });
    expect(endPages(out)).toEqual(new Map());
    expect(endPages(src)).toEqual(new Map());
    const js = JSON.parse(readFileSync(join(dir, 'uam.report.json'), 'utf8')) as { result: MigrationResult };
    expect(js.result.unmapAsMapped).toEqual({ unmaps: 2, whole: 2, maps: 2, droppedDone: 0, droppedNothing: 0, holes: 0, flagged: 0 });
    expect(js.result.counts).toEqual({});
  });

  it('a VFIO teardown on AMD v1 (8M in 1M pages, 4K asked, stepping by the returned 1M) PASSES: the first step unmaps the whole 8M, the 7 later steps are dropped', async () => {
    // paddr 0x40400000 for iova 0x300000: 1M off the 2M grid, so the driver uses 1M pages only.
    const steps = ['0x300000', '0x400000', '0x500000', '0x600000', '0x700000', '0x800000', '0x900000', '0xa00000'];
    const src = ledgerOf(amdTeardown('0x40400000', steps));
    expect(
      commandsOf(src)
        .slice(1)
        .map((c) => c[4]),
    ).toEqual(steps.map(() => '0x100000')); // each step removed 1M
    expect(withQueries(src, (q) => q.callers().map(withWords))[0]!.advice).toContain('migrate --strategy unmap-as-mapped --caller vfio-dma');
    const { r, out } = await migrated(src, builtin('unmap-as-mapped'));
    expect(regressions(r)).toEqual({});
    expect(r.passed).toBe(true);
    expect(r.unmapAsMapped).toEqual({ unmaps: 8, whole: 1, maps: 1, droppedDone: 7, droppedNothing: 0, holes: 0, flagged: 0 });
    // The first step removed 7M before the source did; the 7 later steps removed them in the source.
    expect(r.caughtUp).toEqual({ unmaps: 1, bytes: 7n * M });
    expect(r.problems).toEqual([]);
    expect(commandsOf(out)).toEqual([
      ['map', '0x300000', '0x800000', 'vfio-dma', undefined, true],
      ['unmap', '0x300000', '0x800000', 'vfio-dma', '0x800000', true],
    ]);
    expect(r.cost.as1!.before.unmaps).toBe(8);
    expect(r.cost.as1!.after.unmaps).toBe(1);
    // The same map with paddr on the 2M grid: 1M, 4M, 2M, 1M pages, 4 steps, the 3 later ones dropped.
    const src2 = ledgerOf(amdTeardown('0x40300000', ['0x300000', '0x400000', '0x800000', '0xa00000']));
    expect(
      commandsOf(src2)
        .slice(1)
        .map((c) => c[4]),
    ).toEqual(['0x100000', '0x400000', '0x200000', '0x100000']);
    const m2 = await migrated(src2, builtin('unmap-as-mapped'));
    expect(m2.r.passed).toBe(true);
    expect(m2.r.unmapAsMapped).toMatchObject({ unmaps: 4, whole: 1, droppedDone: 3 });
  });

  it('a real cut (the rest stays mapped in the source while the caller unmaps elsewhere) FAILS: the pages removed too early are named', async () => {
    // AMD v1, 0x101000+8K at 4K alignment: two 4K pages. vfio-dma unmaps the first; the second
    // stays mapped in the source while vfio-dma maps and unmaps elsewhere, and goes only at #6.
    const cmds = [
      { op: 'domain', domain: 'as1', profile: 'amd-v1' },
      { op: 'map', domain: 'as1', iova: '0x101000', paddr: '0x40101000', size: '8K', caller: 'vfio-dma' },
      { op: 'unmap', domain: 'as1', iova: '0x101000', size: '4K', caller: 'vfio-dma' },
      { op: 'map', domain: 'as1', iova: '0x200000', paddr: '0x40200000', size: '4K', caller: 'vfio-dma' },
      { op: 'unmap', domain: 'as1', iova: '0x200000', size: '4K', caller: 'vfio-dma' },
      { op: 'unmap', domain: 'as1', iova: '0x102000', size: '4K', caller: 'vfio-dma' },
    ];
    const src = ledgerOf(cmds);
    const { r, out } = await migrated(src, builtin('unmap-as-mapped'));
    expect(r.passed).toBe(false);
    // The ends agree: only the early removal (and the unmap it left with nothing to do) shows it.
    expect(endPages(out)).toEqual(endPages(src));
    expect(regressions(r)).toEqual({ 'unmap-early': 1, 'unmap-empty': 1 });
    expect(found1(r, 'unmap-early')).toEqual([
      {
        at: 3,
        new: 3,
        caller: 'vfio-dma',
        ranges: [{ iova: 0x102000n, size: 0x1000n }],
        detail:
          "#3 (new #3) removed 0x102000+4K in the new ledger (it unmapped 0x101000+8K), which the source still mapped when vfio-dma's next unmap, 0x200000+4K at #5 (new #5), went elsewhere: removed too early, not a teardown",
      },
    ]);
    expect(found1(r, 'unmap-empty').map((p) => [p.at, p.detail])).toEqual([
      [6, 'unmap 0x102000+4K is dropped (nothing is issued for it); the source removed 4K'],
    ]);
    expect(r.caughtUp).toEqual({ unmaps: 0, bytes: 0n });
    const dir = dirname(src);
    const io = { o: '', e: '' };
    const cap = { out: (x: string) => (io.o += x), err: (x: string) => (io.e += x) };
    expect(await run(['--db', src, 'migrate', '--strategy', 'unmap-as-mapped', '--out', join(dir, 'cut.db'), '--fail-on-regression'], cap)).toBe(1);
    const lines = io.o.split('\n');
    expect(lines[3]).toBe(
      'FAIL 2. unmaps: 1 removing nothing where the source removed something, 0 refused that the source carried out, 1 removing pages the source still maps',
    );
    expect(lines).toContain(
      "  unmap removes pages too early at #3 (new #3), vfio-dma: #3 (new #3) removed 0x102000+4K in the new ledger (it unmapped 0x101000+8K), which the source still mapped when vfio-dma's next unmap, 0x200000+4K at #5 (new #5), went elsewhere: removed too early, not a teardown",
    );
    expect(lines).toContain('  vfio-dma (as1): 1 unmap removes nothing, 1 unmap removes pages too early');
    expect(readFileSync(join(dir, 'cut.report.md'), 'utf8')).toContain('| as1 | vfio-dma | 0 | 1 | 0 | 1 | 0 / 0 / 0 | 0 | 0 / 0 | 0 | 0 | 0 |');

    // Without the last unmap the second page stays mapped in the source to the end: missing at the end, and intended only there.
    const { r: r2 } = await migrated(ledgerOf(cmds.slice(0, 5)), builtin('unmap-as-mapped'));
    expect(regressions(r2)).toEqual({ 'unmap-early': 1, 'end-unmapped': 1, 'intent-lost': 1 });
    expect(found1(r2, 'end-unmapped').map((p) => [p.at, p.detail])).toEqual([
      [3, 'as1: 0x102000+4K is mapped at the end of the source (map #2 by vfio-dma), not in the new ledger (removed by new #3, made from #3)'],
    ]);
  });

  it('another caller touching the pages removed ahead of the source is a regression too', async () => {
    // 8M in 1M pages; after the first step another caller unmaps one of the 1M pages the source still maps.
    const src = ledgerOf([
      ...amdTeardown('0x40400000', ['0x300000']),
      { op: 'unmap', domain: 'as1', iova: '0x500000', size: '1M', caller: 'qemu' },
      ...['0x400000', '0x500000', '0x600000', '0x700000', '0x800000', '0x900000', '0xa00000'].map((iova) => ({
        op: 'unmap',
        domain: 'as1',
        iova,
        size: '4K',
        caller: 'vfio-dma',
      })),
    ]);
    const { r } = await migrated(src, builtin('unmap-as-mapped'), { caller: 'vfio-dma' });
    expect(r.passed).toBe(false);
    expect(found1(r, 'unmap-early').map((p) => [p.at, p.detail])).toEqual([
      [
        3,
        '#3 (new #3) removed 0x400000+7M in the new ledger (it unmapped 0x300000+8M), which the source still mapped when the unmap 0x500000+1M by qemu at #4 (new #4) reached them: removed too early, not a teardown',
      ],
    ]);
  });

  it("an unmap whose source removal reaches another caller's map is kept as it is and flagged: not a stepping caller", async () => {
    const src = ledgerOf(intel); // kvm unmaps 4K of vfio's 2M page
    const { r } = await migrated(src, builtin('unmap-as-mapped'));
    expect(r.passed).toBe(false);
    expect(r.unmapAsMapped).toEqual({ unmaps: 1, whole: 0, maps: 0, droppedDone: 0, droppedNothing: 0, holes: 0, flagged: 1 });
    expect(found1(r, 'flagged').map((p) => [p.at, p.caller, p.detail])).toEqual([
      [
        3,
        'kvm',
        "unmap 0x201000+4K removed 0x200000+2M in the source, which reaches the map 0x200000+2M (source #2, by vfio), another caller's: not a teardown of its own maps, kept as it is; strict unmap refuses it (EINVAL)",
      ],
    ]);
  });

  it('an unmap that removed nothing in the source is dropped, but for what its caller still believes mapped (another caller removed it)', async () => {
    const src = ledgerOf([
      { op: 'domain', domain: 'd', profile: 'intel-vtd' },
      { op: 'map', domain: 'd', iova: '0x100000', paddr: '0x100000', size: '8K', caller: 'a' },
      { op: 'unmap', domain: 'd', iova: '0x100000', size: '8K', caller: 'b' },
      { op: 'unmap', domain: 'd', iova: '0x100000', size: '8K', caller: 'a' }, // a miss: b removed it
      { op: 'unmap', domain: 'd', iova: '0x300000', size: '4K', caller: 'a' }, // a miss: never mapped
    ]);
    const { r, out } = await migrated(src, builtin('unmap-as-mapped'), { caller: 'a' });
    expect(regressions(r)).toEqual({});
    expect(r.passed).toBe(true);
    expect(r.unmapAsMapped).toEqual({ unmaps: 2, whole: 0, maps: 0, droppedDone: 0, droppedNothing: 2, holes: 1, flagged: 0 });
    // a's intent there ends as in the source: an unmap of the hole it still believed mapped.
    expect(commandsOf(out).slice(1)).toEqual([
      ['unmap', '0x100000', '0x2000', 'b', '0x2000', true],
      ['unmap', '0x100000', '0x2000', 'a', '0x0', true],
    ]);
    expect(endIntent(out)).toEqual(endIntent(src));
  });

  it('the strategy is offered by the command line and by scripts', async () => {
    const src = ledgerOf(mjsonl);
    const io = { o: '', e: '' };
    const cap = { out: (x: string) => (io.o += x), err: (x: string) => (io.e += x) };
    expect(await run(['--db', src, 'migrate', '--strategy', 'unmap-as-mappd', '--out', join(dirname(src), 'x.db')], cap)).toBe(2);
    expect(io.e).toBe('iommu-ledger: --strategy "unmap-as-mappd": one of split-maps, widen-unmaps, unmap-as-mapped, flag, keep\n');
    expect(() => defineMigration({ name: 'x', rules: [{ strategy: 'unmap-as-mapped' }] })).not.toThrow();
    // A transform can combine it: ctx.unmapAsMapped.
    const m = defineMigration({ name: 'custom', rules: [{ strategy: (c, ctx) => ctx.unmapAsMapped(c) }] });
    const { r } = await migrated(src, m);
    expect(r.passed).toBe(true);
    expect(r.unmapAsMapped).toMatchObject({ whole: 2 });
  });
});

/**
 * Histories of a caller that steps by the returned size: `vfio-dma` maps regions (in 16M slots,
 * of several shapes, so the driver picks 4K..4M pages) and tears each down as VFIO does, asking
 * for 4K and advancing by the size the unmap returned, until the end of the region; `qemu` maps
 * and exactly unmaps its own buffers elsewhere, also in the middle of a teardown, where
 * `vfio-dma` may map another region too.
 */
type Other = { kind: 'qemu'; slot: number; pages: number } | { kind: 'vmap'; slot: number; shape: number; pages: number };
type StepOp = Other | { kind: 'teardown'; slot: number; pause: number; mid: Other[] };
const otherArb: fc.Arbitrary<Other> = fc.oneof(
  fc.record({ kind: fc.constant('qemu' as const), slot: fc.integer({ min: 0, max: 3 }), pages: fc.integer({ min: 1, max: 16 }) }),
  fc.record({
    kind: fc.constant('vmap' as const),
    slot: fc.integer({ min: 0, max: 4 }),
    shape: fc.integer({ min: 0, max: 4 }),
    pages: fc.integer({ min: 1, max: 40 }),
  }),
);
const stepOpsArb: fc.Arbitrary<StepOp[]> = fc.array(
  fc.oneof(
    { weight: 2, arbitrary: otherArb },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('teardown' as const),
        slot: fc.integer({ min: 0, max: 4 }),
        pause: fc.integer({ min: 0, max: 6 }),
        mid: fc.array(otherArb, { maxLength: 2 }),
      }),
    },
  ),
  { minLength: 1, maxLength: 14 },
);

/** The region of a vfio-dma map: [offset in its 16M slot, pages, paddr's offset from the iova's]. */
function shapeOf(profile: string, shape: number, pages: number): [number, number, number] {
  switch (shape) {
    case 0:
      return [0, 512, 0]; // one 2M page
    case 1:
      return [0, 1536, 0]; // 6M: three 2M pages (VT-d), 4M + 2M (AMD)
    case 2:
      return [0x1000, pages, 0]; // 4K-aligned: small pages
    case 3:
      return [0x100000, 768, 0]; // from 1M: 4K pages up to 2M, then a 2M page (VT-d); 1M + 2M (AMD)
    default:
      return [0x300000, profile === 'amd-v1' ? 2048 : 48, 0x100000]; // paddr 1M off the 2M grid: 1M pages (AMD), 4K pages (VT-d)
  }
}

/** Appends a stepping history to a new ledger, each unmap as the last returned size directs. */
function steppingLedger(profile: string, ops: StepOp[]): string {
  const path = tempDb('step.db');
  const l = new Ledger(path);
  const put = (c: Record<string, unknown>) => l.appendRaw([{ domain: 'd', ...c }])[0]!;
  put({ op: 'domain', profile });
  const vfio = new Map<number, { iova: number; size: number }>();
  const qemu = new Map<number, { iova: number; size: number }>();
  const other = (o: Other) => {
    if (o.kind === 'qemu') {
      const m = qemu.get(o.slot);
      if (m) {
        put({ op: 'unmap', iova: hx(m.iova), size: hx(m.size), caller: 'qemu' });
        qemu.delete(o.slot);
      } else {
        const iova = 0x2000_0000 + o.slot * 0x20_0000 + 0x1000;
        put({ op: 'map', iova: hx(iova), paddr: hx(0x2_0000_0000 + iova), size: hx(o.pages * 0x1000), caller: 'qemu' });
        qemu.set(o.slot, { iova, size: o.pages * 0x1000 });
      }
    } else if (!vfio.has(o.slot)) {
      const [off, pages, pd] = shapeOf(profile, o.shape, o.pages);
      const iova = 0x4000_0000 + o.slot * 0x100_0000 + off;
      put({ op: 'map', iova: hx(iova), paddr: hx(0x1_0000_0000 + iova + pd), size: hx(pages * 0x1000), caller: 'vfio-dma' });
      vfio.set(o.slot, { iova, size: pages * 0x1000 });
    }
  };
  for (const o of ops) {
    if (o.kind !== 'teardown') {
      other(o);
      continue;
    }
    const m = vfio.get(o.slot);
    if (!m) continue;
    // VFIO's vfio_unmap_unpin(): unmapped = iommu_unmap(domain, iova, 4K); iova += unmapped; while iova < end.
    let iova = m.iova;
    for (let k = 0; iova < m.iova + m.size; k++) {
      if (k === o.pause) o.mid.forEach(other);
      const r = put({ op: 'unmap', iova: hx(iova), size: '0x1000', caller: 'vfio-dma' });
      expect(r.unmapped).toBeGreaterThan(0n);
      iova += Number(r.unmapped);
    }
    vfio.delete(o.slot);
  }
  l.close();
  return path;
}

describe('migrate --strategy unmap-as-mapped: properties', () => {
  for (const profile of ['amd-v1', 'intel-vtd']) {
    it(`a caller that steps by the returned size, beside another caller's symmetric traffic, always PASSES: 0 over-unmaps, 0 refused, the same end (${profile})`, async () => {
      // (That the histories exercise it: stepped over-unmaps in the source, steps dropped, pages removed ahead of the source.)
      const seen = { stepped: 0, dropped: 0, caughtUp: 0 };
      await fc.assert(
        fc.asyncProperty(stepOpsArb, async (ops) => {
          const src = steppingLedger(profile, ops);
          const { r, out } = await migrated(src, builtin('unmap-as-mapped'));
          expect(regressions(r)).toEqual({});
          expect(r.passed).toBe(true);
          expect(r.unmapAsMapped?.flagged ?? 0).toBe(0);
          // Nothing refused, nothing over-unmapped or left mapped in the new ledger.
          expect(eventsOf(out).filter((e) => e.body.ok === false)).toEqual([]);
          withQueries(out, (q) => {
            expect(q.findings({ kind: 'over-unmap' })).toEqual([]);
            expect(q.findings({ kind: 'left-mapped' })).toEqual([]);
          });
          // It ends with what the source ends with: pages and intent.
          expect(endPages(out)).toEqual(endPages(src));
          expect(endIntent(out)).toEqual(endIntent(src));
          // Every vfio-dma unmap is a whole map in the new ledger.
          withQueries(out, (q) =>
            expect(
              q
                .callers()
                .filter((c) => c.caller === 'vfio-dma' && c.unmaps > 0)
                .every((c) => c.exact === c.unmaps),
            ).toBe(true),
          );
          checkAgainstOracle(src, out, r);
          seen.stepped += withQueries(src, (q) => q.findings({ kind: 'over-unmap' }).filter((f) => f.stepped === true).length);
          seen.dropped += r.unmapAsMapped?.droppedDone ?? 0;
          seen.caughtUp += r.caughtUp.unmaps;
        }),
        { numRuns: Number(process.env.MIGRATE_RUNS ?? 25) },
      );
      expect(seen.dropped).toBeGreaterThan(0);
      expect(seen.caughtUp).toBeGreaterThan(0);
      expect(seen.stepped).toBeGreaterThan(0);
    }, 240_000);
  }
});
