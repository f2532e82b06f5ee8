/**
 * The importer (issue 12) on real Linux 6.1 ftrace captures made under QEMU (VT-d and AMD-Vi;
 * /work/captures/SUMMARY.md, recipe /work/shared/reference/capture-qemu-traces.md). Each fixture
 * in test/fixtures/real is cut at line boundaries from one capture (its 12 header lines kept
 * where they were); the describe blocks name the capture and the line range. tie/md/fl.trace are
 * /work/shared/repro's extracts of known failures (real lines from an earlier run of the same
 * capture recipe), copied unchanged.
 *
 * Every import runs the command line in-process into a real SQLite ledger, and is held to what
 * the kernel printed: no divergence under the right profile, the kernel's own over-unmap count,
 * and the union of the inferred address spaces equal to a plain replay of the records
 * (real-helpers.ts), at the end and at every pause of the trace (> 1 ms without a record).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from '../cli/helpers.js';
import { tempDb } from '../ledger/helpers.js';
import {
  fixture,
  ledgerDepth,
  linesOf,
  mappedRanges,
  pauses,
  plainReplay,
  positionAfterLine,
  realRecords,
  runsOf,
  storedEvents,
  type StoredEvent,
} from './real-helpers.js';

interface Summary {
  lines: number;
  records: number;
  stored: number;
  spaces: string[];
  reordered: number;
  beforeTrace: number;
  beforeTraceBytes: string;
  divergences: number;
  overUnmaps: number;
  report: string[];
}

interface Finding {
  position: number;
  domain: string;
  requested: { iova: string; size: string };
  unmappedSize: string;
  stepped?: boolean;
  step?: { verdict: string; reason: string; at?: number };
}

/** `iommu-ledger --json import FILE --profile P` into a new (or the given) ledger. */
async function importJson(file: string, profile: string, db = tempDb()): Promise<{ db: string; s: Summary }> {
  const r = await cli('--db', db, '--json', 'import', file, '--profile', profile);
  expect(r.code, r.err).toBe(0);
  return { db, s: JSON.parse(r.out) as Summary };
}

async function audit(db: string, what: 'over-unmaps' | 'divergences' | 'left-mapped', ...more: string[]): Promise<Finding[]> {
  const r = await cli('--db', db, '--json', 'audit', what, ...more);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as Finding[];
}

async function queryJson<T>(db: string, ...argv: string[]): Promise<T> {
  const r = await cli('--db', db, '--json', ...argv);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as T;
}

/** The union of the import's spaces equals the plain replay at the end and after every pause of the trace. */
function expectUnionIsReplay(db: string, spaces: string[], text: string): void {
  const stops = pauses(text);
  const replay = plainReplay(text, stops);
  expect(runsOf(ledgerDepth(db, spaces)), 'at the end').toEqual(runsOf(replay.depth));
  const events = storedEvents(db);
  let checked = 0;
  for (const line of stops) {
    const at = positionAfterLine(events, line);
    if (at === undefined) continue;
    expect(runsOf(ledgerDepth(db, spaces, at)), `after line ${line} (event #${at})`).toEqual(runsOf(replay.at.get(line)!));
    checked++;
  }
  // A pause of over 1 ms is one no ordering decision crosses: every one is a consistent cut.
  expect(checked).toBe(stops.length);
}

const lineOf = (e: StoredEvent) => e.data.from?.line;

describe('known failures (/work/shared/repro), --profile intel-vtd', () => {
  it('tie.trace (CPU 0 unmaps 12K at the very timestamp CPU 1 maps its last 4K, printed first): no divergence, no over-unmap, nothing left mapped', async () => {
    const text = readFileSync(fixture('tie.trace'), 'utf8');
    expect(plainReplay(text).pulls).toBe(1); // the fixture holds the tie: the unmap is printed before the map it removes
    const { db, s } = await importJson(fixture('tie.trace'), 'intel-vtd');
    expect([s.divergences, s.overUnmaps, s.beforeTrace]).toEqual([0, 0, 0]);
    expect(await audit(db, 'divergences')).toEqual([]);
    expect(await audit(db, 'over-unmaps')).toEqual([]);
    expect(runsOf(ledgerDepth(db, s.spaces))).toEqual([]);
    // The unmap was stored after all three maps, in their space.
    const ev = storedEvents(db).filter((e) => e.type === 'map' || e.type === 'unmap');
    expect(ev.map((e) => [e.type, lineOf(e)])).toEqual([
      ['map', 1],
      ['map', 2],
      ['map', 4],
      ['unmap', 3],
    ]);
    expect(new Set(ev.map((e) => e.stream)).size).toBe(1);
  });

  it("md.trace (two disks' domains): the 16K unmap's pages were all in one space (dd's maps), kworker's 4K map in the other", async () => {
    const { db, s } = await importJson(fixture('md.trace'), 'intel-vtd');
    expect([s.divergences, s.overUnmaps, s.beforeTrace]).toEqual([0, 0, 0]);
    expect(await audit(db, 'divergences')).toEqual([]);
    expect(await audit(db, 'over-unmaps')).toEqual([]);
    const ev = storedEvents(db);
    const big = ev.find((e) => e.type === 'unmap' && e.data.body.size === '0x4000')!;
    const dd = ev.filter((e) => e.type === 'map' && e.data.who?.task === 'dd');
    const kw = ev.filter((e) => e.data.who?.task === 'kworker/0:1H');
    expect(dd).toHaveLength(3);
    expect(dd.every((e) => e.stream === big.stream)).toBe(true);
    expect(kw.map((e) => e.type)).toEqual(['map', 'unmap']);
    expect(kw.every((e) => e.stream !== big.stream)).toBe(true);
    expect(s.spaces).toHaveLength(2);
    // Just before the 16K unmap its whole range was mapped in its space, and only there by dd.
    expect(mappedRanges(db, big.stream, big.position - 1)).toEqual(['0xffe40000-0xffe44000 x1']);
    expect(big.data.body.unmapped).toBe('0x4000');
    // In the end nothing is left mapped in either space.
    expect(runsOf(ledgerDepth(db, s.spaces))).toEqual([]);
  });

  it("fl.trace (Intel VFIO run: the floppy's 16M identity map and VFIO's 8K at IOVA 0): the 4K unmap goes to VFIO's map, 0x1000+4K stays mapped there, the 16M map is untouched", async () => {
    const { db, s } = await importJson(fixture('fl.trace'), 'intel-vtd');
    expect([s.divergences, s.overUnmaps, s.beforeTrace]).toEqual([0, 0, 0]);
    expect(await audit(db, 'divergences')).toEqual([]);
    expect(await audit(db, 'over-unmaps')).toEqual([]);
    const ev = storedEvents(db);
    const vfioMap = ev.find((e) => e.type === 'map' && e.data.who?.task === 'vfio-dma')!;
    const floppy = ev.find((e) => e.type === 'map' && e.data.who?.task === 'init')!;
    const unmap = ev.find((e) => e.type === 'unmap')!;
    expect(unmap.stream).toBe(vfioMap.stream);
    expect(floppy.stream).not.toBe(vfioMap.stream);
    expect(unmap.data.body).toMatchObject({ iova: '0x0', size: '0x1000', unmapped: '0x1000' });
    expect(mappedRanges(db, vfioMap.stream)).toEqual(['0x1000-0x2000 x1']);
    expect(mappedRanges(db, floppy.stream)).toEqual(['0x0-0x1000000 x1']);
    const st = await queryJson<{ pages: Array<{ iova: string; paddr: string; mappedBy: number }> }>(db, 'state', '--domain', vfioMap.stream);
    expect(st.pages).toEqual([expect.objectContaining({ iova: '0x1000', paddr: '0x9c3b000', mappedBy: vfioMap.position })]);
  });
});

// res-amd-vi-midstream-nvme/trace.txt: lines 1-12 (header) and 10751-10945: the nvme driver's
// I/O (scatter-gather lists mapped and unmapped whole) then its unbind, whose 13 unmaps remove
// queues mapped before tracing was switched on (the capture's own count: 13, all pre-trace).
describe('a trace that starts mid-stream (amd-midstream-nvme.trace), --profile amd-v1', () => {
  const file = fixture('amd-midstream-nvme.trace');
  const text = readFileSync(file, 'utf8');
  const replay = plainReplay(text);

  it('the fixture: 13 unmaps find nothing mapped, none finds only part of its range', () => {
    expect(replay.foundNothing).toHaveLength(13);
    expect(replay.foundPart).toEqual([]);
    expect(replay.pulls).toBe(0);
  });

  it('the mappings from before the trace are inferred (report and JSON summary), one per such unmap, with no divergence', async () => {
    const db = tempDb();
    const r = await cli('--db', db, 'import', file, '--profile', 'amd-v1');
    expect(r.code, r.err).toBe(0);
    const bytes = replay.foundNothing.reduce((a, u) => a + u.bytes, 0n);
    expect(bytes).toBe(196n * 1024n);
    expect(r.out).toMatch(/^before the trace: 13 mapping\(s\), 196K in all, existed before the trace began/m);
    expect(r.out).not.toMatch(/^divergences:/m);
    const j = await importJson(file, 'amd-v1');
    expect(j.s.beforeTrace).toBe(replay.foundNothing.length);
    expect(BigInt(j.s.beforeTraceBytes)).toBe(bytes);
    expect([j.s.divergences, j.s.overUnmaps]).toEqual([0, 0]);
    expect(await audit(j.db, 'divergences')).toEqual([]);
    expectUnionIsReplay(j.db, j.s.spaces, text);
  });

  it("each inferred map: body.inferred 'before-trace', caller '(before the trace)', stored just before the unmap that proves it, over exactly its range", async () => {
    const { db } = await importJson(file, 'amd-v1');
    const ev = storedEvents(db);
    const inferred = ev.filter((e) => e.type === 'map' && e.data.body.inferred === 'before-trace');
    expect(inferred.map(lineOf)).toEqual(replay.foundNothing.map((u) => u.line));
    for (const m of inferred) {
      expect(m.data.who?.caller).toBe('(before the trace)');
      expect(m.data.who?.task).toBeUndefined();
      const next = ev.find((e) => e.position > m.position && e.stream === m.stream)!;
      expect(next.type).toBe('unmap');
      expect(lineOf(next)).toBe(lineOf(m));
      expect(m.data.body.iova).toBe(next.data.body.iova);
      expect(m.data.body.size).toBe(next.data.body.unmapped);
    }
    // Maps the trace printed are never marked.
    expect(ev.filter((e) => e.type === 'map' && e.data.who?.caller === '(before the trace)')).toHaveLength(inferred.length);
  });

  it('state, history and blame show an inferred mapping as such', async () => {
    const { db } = await importJson(file, 'amd-v1');
    const ev = storedEvents(db);
    const m = ev.find((e) => e.type === 'map' && e.data.body.inferred === 'before-trace' && e.data.body.iova === '0xffd7f000')!;
    expect(m).toBeDefined();
    const st = await queryJson<{ pages: Array<Record<string, unknown>> }>(db, 'state', '--domain', m.stream, '--at', String(m.position));
    expect(st.pages.filter((p) => p.mappedBy === m.position)).toEqual([
      expect.objectContaining({ iova: '0xffd7f000', caller: '(before the trace)', inferred: 'before-trace' }),
    ]);
    const text = await cli('--db', db, 'state', '--domain', m.stream, '--at', String(m.position));
    expect(text.out).toMatch(new RegExp(`^0xffd7f000 .*#${m.position} \\(before the trace\\)$`, 'm'));
    const h = await queryJson<Array<{ position: number; type: string; who: { caller?: string }; body: Record<string, unknown> }>>(
      db,
      'history',
      '0xffd7f000',
      '--domain',
      m.stream,
    );
    expect(h.map((e) => [e.position, e.type, e.who.caller, e.body.inferred])).toEqual([
      [m.position, 'map', '(before the trace)', 'before-trace'],
      [m.position + 1, 'unmap', 'init', undefined],
    ]);
    const b = await queryJson<{ page?: { mappedBy: number }; cause?: { position: number; who: { caller?: string } } }>(
      db,
      'blame',
      '0xffd7f000',
      '--domain',
      m.stream,
      '--at',
      String(m.position),
    );
    expect(b.page?.mappedBy).toBe(m.position);
    expect(b.cause?.position).toBe(m.position);
    expect(b.cause?.who.caller).toBe('(before the trace)');
  });

  it('a fault 1.8 ms after such an unmap, at an IOVA it removed: explain names the task, the time, and a use after unmap', async () => {
    // The synthetic fault (AMD-Vi's io_page_fault names the device's driver) goes in time order
    // after the unmap of 0xffd7f000+4K by init at 25.863707 (fixture line 199).
    const unmap = realRecords(text).find((x) => x.event === 'unmap' && x.iova === 0xffd7f000n)!;
    expect([unmap.task, unmap.ts, unmap.line]).toEqual(['init', '25.863707', 199]);
    const faultTs = (Number(unmap.ts) + 0.0018).toFixed(6);
    const fault = `          <idle>-0       [001] d.h1.    ${faultTs}: io_page_fault: IOMMU:nvme 0000:00:03.0 iova=0x00000000ffd7f010 flags=0x0000`;
    const lines = text.split('\n');
    const at = realRecords(text).find((x) => Number(x.ts) > Number(faultTs))!.line - 1;
    lines.splice(at, 0, fault);
    const db = tempDb();
    const f = join(db, '..', 'amd-midstream-fault.trace');
    writeFileSync(f, lines.join('\n'));
    const { s } = await importJson(f, 'amd-v1', db);
    expect([s.divergences, s.beforeTrace]).toEqual([0, 13]);
    const ev = storedEvents(db);
    const u = ev.find((e) => e.type === 'unmap' && e.data.body.iova === '0xffd7f000')!;
    const flt = ev.find((e) => e.type === 'fault')!;
    expect(flt.stream).toBe(u.stream);
    expect(flt.position).toBeGreaterThan(u.position);
    const ex = await cli('--db', db, 'explain', '0xffd7f010', '--domain', u.stream);
    expect(ex.code, ex.err).toBe(0);
    expect(ex.out).toMatch(/\binit\b.*unmapped it at 25\.863707/);
    expect(ex.out).toMatch(new RegExp(`A fault at 0xffd7f010 from 0000:00:03\\.0 at event #${flt.position}.* followed.*\\(use after unmap\\)`));
    const faults = await queryJson<Array<{ position: number; domain: string; cause: string; causePosition?: number; device?: string }>>(db, 'audit', 'faults');
    expect(faults).toEqual([
      expect.objectContaining({ position: flt.position, domain: u.stream, cause: 'use-after-unmap', causePosition: u.position, device: '0000:00:03.0' }),
    ]);
  });
});

// res-intel-vtd-midstream-multi/trace.txt: lines 1-12 and 51768-51825: the end of the run, two
// scatter-gather lists, then the unbind of virtio-blk, nvme and ahci, whose 22 unmaps remove
// queues mapped before tracing began (the capture's count: 22 genuinely pre-trace), some of the
// same IOVAs in two domains (0xffffe000 at lines 47 and 54, 0xfffc0000 at 50 and 67, ...).
describe('a mid-stream trace of several devices (intel-midstream-unbind.trace), --profile intel-vtd', () => {
  it('one inferred mapping per unmap that found nothing, never two overlapping ones in one space; no divergence; the union is the plain replay', async () => {
    const file = fixture('intel-midstream-unbind.trace');
    const text = readFileSync(file, 'utf8');
    const replay = plainReplay(text);
    expect(replay.foundNothing).toHaveLength(22);
    expect(replay.foundPart).toEqual([]);
    const bytes = replay.foundNothing.reduce((a, u) => a + u.bytes, 0n);
    const { db, s } = await importJson(file, 'intel-vtd');
    expect([s.beforeTrace, BigInt(s.beforeTraceBytes), s.divergences, s.overUnmaps]).toEqual([22, bytes, 0, 0]);
    expect(s.report).toContain(
      'before the trace: 22 mapping(s), 768K in all, existed before the trace began: inferred from the unmaps that removed them, and stored marked as inferred',
    );
    expect(s.spaces.length).toBeGreaterThanOrEqual(2);
    expect(s.spaces.length).toBeLessThanOrEqual(4);
    const inferred = storedEvents(db).filter((e) => e.type === 'map' && e.data.body.inferred === 'before-trace');
    expect(inferred.map(lineOf)).toEqual(replay.foundNothing.map((u) => u.line));
    // A range the trace unmapped in a space cannot have been mapped there before the trace began.
    for (const a of inferred) {
      for (const b of inferred) {
        if (a.position >= b.position || a.stream !== b.stream) continue;
        const [as, ae] = [BigInt(a.data.body.iova as string), BigInt(a.data.body.iova as string) + BigInt(a.data.body.size as string)];
        const [bs, be] = [BigInt(b.data.body.iova as string), BigInt(b.data.body.iova as string) + BigInt(b.data.body.size as string)];
        expect(as < be && bs < ae, `lines ${lineOf(a)} and ${lineOf(b)} overlap in ${a.stream}`).toBe(false);
      }
    }
    expectUnionIsReplay(db, s.spaces, text);
  });
});

describe('same-timestamp ties between CPUs, --profile intel-vtd', () => {
  // res-intel-vtd-scalable-strict-ahci/trace.txt (595 same-timestamp reorders in the whole file):
  // lines 1-12 and 75535-75670, where CPU 0 unmaps four 128K lists at 28.381317 before the
  // 64 maps CPU 1 printed at that timestamp fill two of them.
  // res-intel-vtd-forced-strict-multidev/trace.txt: lines 1-12 and 415426-415560, the burst at
  // 34.435788: seven 128K unmaps on CPU 0, then 37 scatter-gather maps on CPU 1 that four of them remove.
  for (const name of ['ahci-ties.trace', 'multidev-burst.trace']) {
    it(`${name}: no divergence, nothing inferred from before the trace, the union of the spaces is the plain replay`, async () => {
      const text = readFileSync(fixture(name), 'utf8');
      const replay = plainReplay(text);
      expect(replay.pulls).toBeGreaterThan(0); // the fixture holds ties
      expect(replay.foundNothing).toEqual([]); // and every range it unmaps was mapped in it
      expect(replay.foundPart).toEqual([]);
      const { db, s } = await importJson(fixture(name), 'intel-vtd');
      expect([s.divergences, s.beforeTrace, s.overUnmaps]).toEqual([0, 0, 0]);
      expect(s.reordered).toBeGreaterThan(0);
      expect(await audit(db, 'divergences')).toEqual([]);
      expect(await audit(db, 'left-mapped')).toEqual([]);
      expectUnionIsReplay(db, s.spaces, text);
    });
  }
});

// res-intel-vtd-lazy-multidev/trace.txt lines 1-250: boot; the floppy's 16M identity map, then
// virtio-blk's and nvme's probes map the same IOVAs (0xfffff000 down) in their own domains.
describe('several devices (lazy-multidev-boot.trace), --profile intel-vtd', () => {
  it('the same IOVAs live in two domains: at most 4 spaces, no divergence, the union is the plain replay', async () => {
    const text = readFileSync(fixture('lazy-multidev-boot.trace'), 'utf8');
    const replay = plainReplay(text);
    expect(replay.maxDepth).toBeGreaterThanOrEqual(2);
    expect(replay.foundNothing).toEqual([]);
    const { db, s } = await importJson(fixture('lazy-multidev-boot.trace'), 'intel-vtd');
    expect(s.spaces.length).toBeGreaterThanOrEqual(2);
    expect(s.spaces.length).toBeLessThanOrEqual(4);
    expect([s.divergences, s.beforeTrace, s.overUnmaps]).toEqual([0, 0, 0]);
    expect(await audit(db, 'divergences')).toEqual([]);
    expectUnionIsReplay(db, s.spaces, text);
    // No space ever holds one IOVA twice: each map went where its range was free.
    for (const e of storedEvents(db)) if (e.type === 'map') expect(e.data.body.ok, `event #${e.position}`).toBe(true);
  });
});

// res-amd-vi-strict-vfio-edu/trace.txt lines 1-165: boot, VFIO attaches the edu device, then
// vfio-dma maps and unmaps test buffers stepping by 4K, and AMD v1's large pages make the kernel
// remove 8K, 64K, 1M and 2M (unmapped_size > size on 18 lines: 8 of lines 32-47, 115-122, 158, 159).
describe('VFIO stepping on AMD-Vi (amd-vfio-stepping.trace)', () => {
  const file = fixture('amd-vfio-stepping.trace');
  const text = readFileSync(file, 'utf8');
  const kernelOver = realRecords(text).filter((x) => x.event === 'unmap' && x.unmapped! > x.size);

  it('--profile amd-v1: no divergence; the over-unmap findings are the unmaps the kernel says removed more', async () => {
    expect(kernelOver).toHaveLength(18);
    const { db, s } = await importJson(file, 'amd-v1');
    expect(s.divergences).toBe(0);
    expect(await audit(db, 'divergences')).toEqual([]);
    const over = await audit(db, 'over-unmaps', '--all');
    expect(s.overUnmaps).toBe(kernelOver.length);
    // Every one is vfio-dma's own teardown stepping by the returned size: none is harmful.
    expect(await audit(db, 'over-unmaps')).toEqual([]);
    expect(over.map((f) => [f.stepped, f.step?.reason])).toEqual(over.map((f) => [true, f.step!.reason === 'ended' ? 'ended' : 'advanced']));
    const ev = new Map(storedEvents(db).map((e) => [e.position, e]));
    expect(over.map((f) => lineOf(ev.get(f.position)!))).toEqual(kernelOver.map((x) => x.line));
    for (const f of over) expect(BigInt(f.unmappedSize)).toBeGreaterThan(BigInt(f.requested.size));
    expect(runsOf(ledgerDepth(db, s.spaces))).toEqual(runsOf(plainReplay(text).depth));
  });

  it('--profile intel-vtd: divergences, but the same over-unmap findings and the same final state (the pages follow the kernel)', async () => {
    const amd = await importJson(file, 'amd-v1');
    const intel = await importJson(file, 'intel-vtd');
    expect(intel.s.divergences).toBeGreaterThan(0);
    expect((await audit(intel.db, 'divergences')).length).toBe(intel.s.divergences);
    const over = await audit(intel.db, 'over-unmaps', '--all');
    expect(over).toHaveLength(kernelOver.length);
    expect(over.every((f) => f.stepped)).toBe(true);
    const ev = new Map(storedEvents(intel.db).map((e) => [e.position, e]));
    expect(over.map((f) => lineOf(ev.get(f.position)!))).toEqual(kernelOver.map((x) => x.line));
    expect(intel.s.spaces).toEqual(amd.s.spaces);
    for (const sp of amd.s.spaces) expect(mappedRanges(intel.db, sp), sp).toEqual(mappedRanges(amd.db, sp));
    expect(runsOf(ledgerDepth(intel.db, intel.s.spaces))).toEqual(runsOf(plainReplay(text).depth));
  });
});

describe('attach records', () => {
  it('passthrough-virtio-blk.trace (res-intel-vtd-passthrough-virtio-blk/trace.txt, whole: 27 lines, attach records only): every attach is stored', async () => {
    const text = readFileSync(fixture('passthrough-virtio-blk.trace'), 'utf8');
    const attaches = [...linesOf(text, 'attach_device_to_domain'), ...linesOf(text, 'add_device_to_group')].sort((a, b) => a - b);
    expect(attaches).toHaveLength(15);
    const { db, s } = await importJson(fixture('passthrough-virtio-blk.trace'), 'intel-vtd');
    expect(s.records).toBe(15);
    const ev = storedEvents(db).filter((e) => e.type === 'device-attached');
    expect(ev.map(lineOf).sort((a, b) => a! - b!)).toEqual(attaches);
    expect(s.spaces.length).toBe(1);
    // The runtime switch of 0000:00:00.0 at 32.239235 (line 27) is stored as well as its boot attach.
    expect(
      ev
        .filter((e) => e.data.body.device === '0000:00:00.0')
        .map(lineOf)
        .sort((a, b) => a! - b!),
    ).toEqual([13, 20, 27]);
  });

  it("vfio-domain-switch.trace (res-intel-vtd-strict-vfio-edu/trace.txt lines 1-60): 0000:00:02.0 attached at boot and twice by VFIO: all stored, VFIO's in the space of its task's first map", async () => {
    const text = readFileSync(fixture('vfio-domain-switch.trace'), 'utf8');
    const dev = text.split('\n').flatMap((l, i) => (/: (attach_device_to_domain|add_device_to_group): .*device=0000:00:02\.0$/.test(l) ? [i + 1] : []));
    expect(dev).toEqual([15, 22, 30, 31]);
    const { db, s } = await importJson(fixture('vfio-domain-switch.trace'), 'intel-vtd');
    expect(s.divergences).toBe(0);
    const ev = storedEvents(db);
    const att = ev.filter((e) => e.type === 'device-attached' && e.data.body.device === '0000:00:02.0');
    expect(att.map(lineOf)).toEqual(dev);
    const firstVfioMap = ev.find((e) => e.type === 'map' && e.data.who?.task === 'vfio-dma')!;
    expect(lineOf(firstVfioMap)).toBe(32);
    const vfioAttaches = att.filter((e) => e.data.who?.task === 'vfio-dma');
    expect(vfioAttaches.map((e) => e.stream)).toEqual([firstVfioMap.stream, firstVfioMap.stream]);
    expect(vfioAttaches.every((e) => e.position < firstVfioMap.position)).toBe(true);
    const floppy = ev.find((e) => e.type === 'map' && e.data.body.size === '0x1000000')!;
    expect(floppy.stream).not.toBe(firstVfioMap.stream);
    expect(linesOf(text, 'attach_device_to_domain').length + linesOf(text, 'add_device_to_group').length).toBe(
      ev.filter((e) => e.type === 'device-attached').length,
    );
  });
});

describe("a VFIO task's maps and its device's faults (vfio-domain-switch.trace)", () => {
  // vfio-dma-180 attaches 0000:00:02.0 and maps inside and above init's 16M identity map: its maps
  // stay in its own space where they can (route.ts, the task's last space first), so a fault from
  // its device 1.8 ms after it unmapped 0x1100000+8K is a use after unmap, not 'never-mapped'.
  // (The fault line is synthetic: VT-d reports faults in the kernel log, not as io_page_fault.)
  it("a fault from the VFIO device 1.8 ms after its task unmapped the IOVA is a use after unmap, in the space of the task's maps", async () => {
    const text = readFileSync(fixture('vfio-domain-switch.trace'), 'utf8');
    const unmap = realRecords(text).find((x) => x.event === 'unmap' && x.iova === 0x1100000n)!;
    expect([unmap.task, unmap.ts, unmap.line]).toEqual(['vfio-dma', '9.865440', 38]);
    const lines = text.split('\n');
    const at = realRecords(text).find((x) => Number(x.ts) > 9.86724)!.line - 1;
    lines.splice(at, 0, '        vfio-dma-180     [001] d.h1.     9.867240: io_page_fault: IOMMU:vfio-pci 0000:00:02.0 iova=0x0000000001100010 flags=0x0000');
    const db = tempDb();
    const f = join(db, '..', 'vfio-fault.trace');
    writeFileSync(f, lines.join('\n'));
    await importJson(f, 'intel-vtd', db);
    const ev = storedEvents(db);
    const u = ev.find((e) => e.type === 'unmap' && e.data.body.iova === '0x1100000')!;
    const attach = ev.filter((e) => e.type === 'device-attached' && e.data.who?.task === 'vfio-dma');
    const faults = await queryJson<Array<{ domain: string; cause: string; causePosition?: number }>>(db, 'audit', 'faults');
    expect(faults).toEqual([expect.objectContaining({ cause: 'use-after-unmap', causePosition: u.position })]);
    // The task's maps, its unmaps and its device's attaches are in one space.
    expect(new Set([...attach, ...ev.filter((e) => e.data.who?.task === 'vfio-dma')].map((e) => e.stream)).size).toBe(1);
  });
});

describe('state --at a trace time before a space existed', () => {
  it("prints the empty state of that space and exits 0 (fl.trace: VFIO's space begins at 11.890369)", async () => {
    const { db } = await importJson(fixture('fl.trace'), 'intel-vtd');
    const ev = storedEvents(db);
    const vfio = ev.find((e) => e.type === 'map' && e.data.who?.task === 'vfio-dma')!.stream;
    const floppy = ev.find((e) => e.type === 'map' && e.data.who?.task === 'init')!.stream;
    const created = ev.find((e) => e.type === 'domain-created' && e.stream === vfio)!.position;
    for (const t of ['5.0', '1.000000', '11.890368']) {
      const r = await cli('--db', db, 'state', '--at', t, '--domain', vfio);
      expect(r.code, `${t}: ${r.err}`).toBe(0);
      expect(r.err).toBe('');
      expect(r.out).toMatch(new RegExp(`^domain ${vfio} \\(intel-vtd, legacy unmap\\) as of event #\\d+: 0 run\\(s\\), 0 mapped`));
      const j = await queryJson<{ at: number; pages: unknown[] }>(db, 'state', '--at', t, '--domain', vfio);
      expect(j.pages).toEqual([]);
      expect(j.at).toBeLessThan(created);
    }
    // The other space had its 16M map by 5.0 s: the time is read, not ignored.
    expect(mappedRanges(db, floppy, (await queryJson<{ at: number }>(db, 'state', '--at', '5.0', '--domain', floppy)).at)).toEqual(['0x0-0x1000000 x1']);
    // And at VFIO's first event, its 8K map.
    expect((await queryJson<{ pages: Array<{ iova: string }> }>(db, 'state', '--at', '11.890369', '--domain', vfio)).pages.map((p) => p.iova)).toEqual(['0x0']);
  });
});
