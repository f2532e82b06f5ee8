import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { defineMigration, MigrationError, type Migration } from '../../src/migrate/define.js';
import { migrate, type MigrationResult } from '../../src/migrate/engine.js';
import { Ledger } from '../../src/projections/ledger.js';
import { Queries } from '../../src/projections/queries.js';
import { EventStore } from '../../src/events/store.js';
import { fromDb } from '../../src/projections/codec.js';
import { historyArb, tempDb } from '../ledger/helpers.js';

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
    const v = withQueries(src, (q) => q.callers()).find((c) => c.site.endsWith(':1090'))!;
    expect(v).toMatchObject({ unmaps: 2, cuts: 2, exact: 0, straddles: 0, readiness: 0, safePage: 0x1000n, largestPage: 0x1000n });
    expect(v.behaviours.legacy).toMatchObject({ overUnmaps: 0, leftMapped: 0 });
    expect(v.behaviours.strict.refused).toBe(2);
    expect(v.verdict.join('; ')).toContain('cuts a map 2 times; harmless on 4K pages, over-unmaps if that map used a page larger than 4K');
    expect(v.advice).toContain('unmaps 4K pieces of 8K maps made by vfio at drivers/vfio/vfio_iommu_type1.c:1502: map in 4K pieces there, or unmap the whole 8K here');
    expect(v.examples.map((e) => e.position)).toEqual([3, 4]);
  });

  it('measures the OMAP over-unmap under each behaviour and keeps straddles apart from cuts', () => {
    const src = ledgerOf([
      ...omap.slice(0, 3),
      { op: 'map', domain: 'isp', iova: '0x60100000', paddr: '0x91000000', size: '64K', caller: 'isp' },
      // crosses the edge of the 64K map: 32K inside, 32K outside
      { op: 'unmap', domain: 'isp', iova: '0x60108000', size: '64K', caller: 'isp', site: 'x.c:1' },
    ]);
    const all = withQueries(src, (q) => q.callers());
    const cut = all.find((c) => c.site.endsWith(':410'))!;
    expect(cut).toMatchObject({ cuts: 1, cutBytes: M - 0x1000n, largestPage: M, safePage: 0x1000n });
    expect(cut.behaviours.legacy).toMatchObject({ overUnmaps: 1, overBytes: M - 0x1000n });
    expect(cut.behaviours.split).toMatchObject({ overUnmaps: 0, leftMapped: 0 });
    expect(cut.behaviours.strict.refused).toBe(1);
    expect(cut.advice).toContain('unmaps 4K pieces of 1M maps made by isp at drivers/media/omap3isp/ispvideo.c:300');
    // The advice does not depend on how many examples are shown.
    expect(withQueries(src, (q) => q.callers({ examples: 0 })).find((c) => c.site.endsWith(':410'))!.advice).toBe(cut.advice);
    const straddle = all.find((c) => c.site === 'x.c:1')!;
    expect(straddle).toMatchObject({ straddles: 1, cuts: 0, cutBytes: 0x8000n });
  });

  it("tells a miss caused by another unmap's over-unmap from a double unmap", () => {
    const src = ledgerOf([
      ...omap.slice(0, 3),
      { op: 'unmap', domain: 'isp', iova: '0x60080000', size: '4K', caller: 'isp2' }, // gone with the over-unmap
      { op: 'unmap', domain: 'isp', iova: '0x70000000', size: '4K', caller: 'isp3' }, // never mapped
    ]);
    const all = withQueries(src, (q) => q.callers());
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
    const v = withQueries(src, (q) => q.callers()).find((c) => c.unmaps > 0)!;
    expect(v).toMatchObject({ spans: 1, cuts: 0, readiness: 1 });
  });
});

describe('migrate: worked scenarios', () => {
  it('OMAP 1M page, split-maps: verifies, the over-unmap is a bug fixed, the source is untouched', async () => {
    const src = ledgerOf(omap);
    const digest = createHash('sha256').update(readFileSync(src)).digest('hex');
    const { r, out } = await migrated(src, strategy('split-maps'));
    expect(r.passed).toBe(true);
    expect(kinds(r, 'bug-fixed')).toBeGreaterThan(0);
    const fixed = r.problems.find((p) => p.kind === 'bug-fixed')!;
    expect(fixed.position).toBe(3); // the 4K unmap that over-unmapped in the source
    expect(fixed.bytes).toBe(M - 0x1000n);
    expect(createHash('sha256').update(readFileSync(src)).digest('hex')).toBe(digest);
    // The final 1M unmap now spans a hole (the 4K piece is gone): it is issued as one unmap per
    // stretch of maps, so the legacy loop of the OMAP hardware, which stops at a hole, removes it all.
    expect(r.onSourceBehaviour.isp).toMatchObject({ overUnmaps: 0, leftMapped: 0 });
    expect(r.cost.isp!.after.unmaps).toBe(3); // 4K, then 264K and 756K around the 4K hole
    // The migrated map is three pieces; the 4K unmap now removes exactly its piece.
    const maps = withQueries(out, (q) => q.db.prepare("SELECT data FROM events WHERE type = 'map'").all() as Array<{ data: string }>).map(
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
    expect(r.problems.filter((p) => p.kind === 'intent-changed' || p.kind === 'lost')).toEqual([]);
    expect(r.passed).toBe(true);
    const unmaps = withQueries(out, (q) => q.db.prepare("SELECT data FROM events WHERE type = 'unmap' ORDER BY position").all() as Array<{ data: string }>).map((e) => {
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
    const ev = withQueries(out, (q) => q.db.prepare("SELECT type, data FROM events WHERE type IN ('map','unmap') ORDER BY position").all() as Array<{ type: string; data: string }>);
    const cmds = ev.map((e) => {
      const d = JSON.parse(e.data) as { body: { iova: string; size: string }; who?: { caller?: string }; from: { derivedFrom: { position: number; strategy: string } } };
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
    expect(kinds(r, 'bug-fixed')).toBeGreaterThan(0);
  });

  it('the VFIO 8K pattern under split-maps maps two 4K pieces; nothing was over-unmapped, so nothing is a bug fixed', async () => {
    const { r, out } = await migrated(ledgerOf(vfio8k), strategy('split-maps'));
    expect(r.passed).toBe(true);
    expect(kinds(r, 'bug-fixed')).toBe(0);
    expect(r.cost.gpu0!.after.maps).toBe(2);
    withQueries(out, (q) => expect(q.callers().find((c) => c.site.endsWith(':1090'))!.exact).toBe(2));
  });

  it('flag keeps the commands, reports each asymmetric unmap once, and fails', async () => {
    const { r } = await migrated(ledgerOf(vfio8k), strategy('flag'));
    expect(r.passed).toBe(false);
    expect(kinds(r, 'flagged')).toBe(2);
    expect(kinds(r, 'rejected')).toBe(0); // folded into the flagged entries
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
    const src = ledgerOf([...intel, { op: 'map', domain: 'gpu0', iova: '0x400000', paddr: '0x81000000', size: '8K', caller: 'dma' }, { op: 'unmap', domain: 'gpu0', iova: '0x400000', size: '4K', caller: 'dma' }]);
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
    const m = defineMigration({ name: 'bad', rules: [{ caller: 'vfio', strategy: (c) => (c.op === 'map' ? [{ op: 'map', iova: c.iova, size: 0n, paddr: c.paddr! }] : []) }] });
    // size 0 is a valid command that the core refuses, so this one verifies as 'rejected'...
    const r = await migrate(src, out, m);
    expect(r.passed).toBe(false);
    expect(kinds(r, 'rejected')).toBe(1);
    const out2 = join(dirname(src), 'bad2.db');
    const m2 = defineMigration({ name: 'bad2', rules: [{ strategy: (c) => [{ op: 'map', iova: c.iova, size: c.size, paddr: -1n }] }] });
    await expect(migrate(src, out2, m2)).rejects.toThrow(/bad2, custom:rules\[0\], source event 2, command 1/);
    expect(existsSync(out2)).toBe(false);
    expect(() => defineMigration({ name: 'x', rules: [{ strategy: 'split-map' as never }] })).toThrow(MigrationError);
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
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('map' as const), slot: fc.integer({ min: 0, max: 15 }), pages: fc.constantFrom(1, 2, 4, 16, 512), caller: fc.constantFrom('a', 'b') }) },
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
  return fc.array(op, { minLength: 1, maxLength: 40 }).map((ops) => {
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

/** A caller's live intent at the end of a ledger, as merged [start, end) ranges. */
function finalIntent(path: string): Map<string, Array<[bigint, bigint]>> {
  return withQueries(path, (q) => {
    const rows = q.db.prepare('SELECT caller, iova, iova_last FROM intent WHERE valid_to IS NULL ORDER BY caller, iova').safeIntegers(true).all() as Array<{ caller: string; iova: bigint; iova_last: bigint }>;
    const out = new Map<string, Array<[bigint, bigint]>>();
    for (const r of rows) {
      const list = out.get(r.caller) ?? [];
      const s = fromDb(r.iova);
      const e = fromDb(r.iova_last) + 1n;
      const last = list[list.length - 1];
      if (last && last[1] === s) last[1] = e;
      else list.push([s, e]);
      out.set(r.caller, list);
    }
    return out;
  });
}

/**
 * Every range the source ever over-unmapped or left mapped (refusals included), and the ranges of
 * maps whose outcome differs between the two ledgers (they collided with such a range in one).
 */
function damaged(path: string, out: string): Array<[bigint, bigint]> {
  const zone = withQueries(path, (q) => [
    ...q.findings({ kind: 'over-unmap' }).flatMap((f) => f.collateral.map((c) => [c.iova, c.iova + c.size] as [bigint, bigint])),
    ...q.findings({ kind: 'left-mapped' }).flatMap((f) => f.leftMapped.map((l) => [l.iova, l.iova + l.size] as [bigint, bigint])),
  ]);
  const maps = (p: string) =>
    withQueries(p, (q) => q.db.prepare("SELECT position, data FROM events WHERE type = 'map'").all() as Array<{ position: number; data: string }>).map((e) => {
      const d = JSON.parse(e.data) as { body: { iova: string; size: string; ok: boolean }; from?: { derivedFrom?: { position: number } } };
      return { position: Number(e.position), from: d.from?.derivedFrom?.position, ok: d.body.ok, range: [BigInt(d.body.iova), BigInt(d.body.iova) + BigInt(d.body.size)] as [bigint, bigint] };
    });
  const src = new Map(maps(path).map((m) => [m.position, m]));
  for (const m of maps(out)) {
    const s = src.get(m.from!);
    if (s && s.ok !== m.ok) zone.push(s.range);
  }
  return zone;
}

function minus(a: Array<[bigint, bigint]>, cut: Array<[bigint, bigint]>): string[] {
  // Page-granular set difference, good enough for small test windows.
  const pages = new Set<string>();
  for (const [s, e] of a) for (let p = s; p < e; p += 0x1000n) pages.add(p.toString(16));
  for (const [s, e] of cut) for (let p = s; p < e; p += 0x1000n) pages.delete(p.toString(16));
  return [...pages].sort();
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
  for (const profile of ['intel-vtd', 'omap', 'arm-lpae-4k', 'iommufd']) {
    it(`split-maps always verifies, and the final intent equals the source's outside what the source damaged (${profile})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.oneof(relatedHistoryArb(profile), historyArb(profile, 30)), async (cmds) => {
          const src = ledgerOf(cmds as unknown[]);
          const { r, out } = await migrated(src, strategy('split-maps'));
          const fails = r.problems.filter((p) => ['rejected', 'over-unmap', 'left-mapped', 'intent-changed', 'lost'].includes(p.kind));
          expect(fails).toEqual([]);
          expect(r.passed).toBe(true);
          // Independently of the engine's own check: the ledgers' intent projections agree.
          const a = finalIntent(src);
          const b = finalIntent(out);
          const zone = damaged(src, out);
          for (const caller of new Set([...a.keys(), ...b.keys()])) {
            expect(minus(a.get(caller) ?? [], zone)).toEqual(minus(b.get(caller) ?? [], zone));
          }
          withQueries(out, (q) => {
            expect(q.findings({ kind: 'over-unmap' })).toEqual([]);
            expect(q.findings({ kind: 'left-mapped' })).toEqual([]);
          });
        }),
        { numRuns: Number(process.env.MIGRATE_RUNS ?? 40), examples: profile === 'arm-lpae-4k' ? found.map((cmds) => [cmds] as [unknown[]]) : [] },
      );
    }, 120_000);
  }
});
