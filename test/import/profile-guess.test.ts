/** The profile guess (src/import/profile-guess.ts): evidence, tiers, conflicts, sampling. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hex64 } from '../../src/core/address.js';
import { parseTraceLine, parseTraceText, type TraceRecord } from '../../src/import/parse.js';
import {
  driverOfLogLine,
  guessProfile,
  guessProfileFromFile,
  linesInRange,
  ProfileEvidence,
  sampleRanges,
  type ProfileGuess,
} from '../../src/import/profile-guess.js';

const K = 1024n;
const M = 1024n * K;
const G = 1024n * M;

let clock = 0;
/** One ftrace line (tracefs text), as the kernel prints it. */
function ft(event: string, body: string): string {
  clock++;
  return `         kworker-812     [003] .....   ${(100 + clock / 1e6).toFixed(6)}: ${event}: ${body}`;
}
const mapLine = (iova: bigint, size: bigint, paddr = 0x1_0000_0000n + iova) =>
  ft('map', `IOMMU: iova=${hex64(iova)} - ${hex64(iova + size)} paddr=${hex64(paddr)} size=${size}`);
const unmapLine = (iova: bigint, size: bigint, unmapped: bigint) =>
  ft('unmap', `IOMMU: iova=${hex64(iova)} - ${hex64(iova + size)} size=${size} unmapped_size=${unmapped}`);
const faultLine = (driver: string, device: string, iova: bigint) => ft('io_page_fault', `IOMMU:${driver} ${device} iova=${hex64(iova)} flags=0x0001`);
const attachLine = (device: string) => ft('attach_device_to_domain', `IOMMU: device=${device}`);

/** Parses lines that must be records. */
function records(lines: string[]): TraceRecord[] {
  return lines.map((l) => {
    const p = parseTraceLine(l);
    if (p.kind !== 'record') throw new Error(`not a record: ${l} (${JSON.stringify(p)})`);
    return p.record;
  });
}

/** A map of `size` at `iova` and an unmap of its first 4K that removed all of it (a whole large page). */
function overUnmap(iova: bigint, size: bigint): string[] {
  return [mapLine(iova, size), unmapLine(iova, 4n * K, size)];
}

const ruledOut = (g: ProfileGuess) => g.ruledOut.map((r) => r.profile);
const reasonFor = (g: ProfileGuess, profile: string) => g.ruledOut.find((r) => r.profile === profile)?.reason ?? '';

describe('the evidence tiers', () => {
  it('an AMD trace (whole 8K, 16K, 64K and 1M pages removed) is amd-v1, with a why naming the sizes', () => {
    const g = guessProfile(
      records([
        attachLine('0000:02:00.0'),
        ...overUnmap(0xfff0_0000n, M),
        ...overUnmap(0xffef_0000n, 64n * K),
        ...overUnmap(0xffee_c000n, 16n * K),
        ...overUnmap(0xffee_a000n, 8n * K),
        mapLine(0xffee_0000n, 4n * K),
        unmapLine(0xffee_0000n, 4n * K, 4n * K),
      ]),
    );
    expect(g.name).toBe('amd-v1');
    expect(g.confidence).toBe('high');
    for (const s of ['8K', '16K', '64K', '1M']) expect(g.why).toContain(s);
    // The old default lost, and the report says why: these are not VT-d page sizes.
    expect(reasonFor(g, 'intel-vtd')).toMatch(/8K, 16K, 64K and 1M are not sizes intel-vtd can remove/);
    expect(g.why).toContain('intel-vtd, the usual default, is ruled out');
    // Split-on-unmap profiles never remove more than asked; OMAP has no 8K or 16K pages.
    expect(reasonFor(g, 'arm-lpae-4k')).toContain('never removes more than asked');
    expect(reasonFor(g, 'omap')).toMatch(/8K and 16K are not sizes omap can remove/);
    expect(g.scores['amd-v1']).toBeGreaterThan(g.scores['intel-vtd']!);
  });

  it('VT-d: unmaps that removed 2M and 1G keep intel-vtd, which amd-v1 fits as well; OMAP and ARM are ruled out', () => {
    const g = guessProfile(records([attachLine('0000:00:02.0'), ...overUnmap(0x20_0000n, 2n * M), ...overUnmap(0x4000_0000n, G)]));
    expect(g.name).toBe('intel-vtd');
    expect(g.why).toContain('whole 2M and 1G pages');
    expect(g.why).toMatch(/intel-vtd, intel-vtd-5level and amd-v1 fit equally/);
    expect(g.confidence).toBe('low');
    expect(ruledOut(g)).not.toContain('amd-v1');
    expect(ruledOut(g)).toEqual(expect.arrayContaining(['omap', 'arm-lpae-4k', 'arm-v7s']));
    expect(reasonFor(g, 'omap')).toContain('2M and 1G are not sizes omap can remove');
  });

  it("VT-d's unmap of an empty top-level entry returns the level's size (512G): VT-d fits, amd-v1 (no 512G pages) does not", () => {
    const g = guessProfile(records([mapLine(0x1000n, 4n * K), unmapLine(0x80_0000_0000n, 4n * K, 512n * G)]));
    expect(g.name).toBe('intel-vtd');
    expect(reasonFor(g, 'amd-v1')).toContain('512G is not a size amd-v1 can remove');
    expect(ruledOut(g)).not.toContain('intel-vtd-5level');
  });

  it('a MediaTek fault record (the driver passes its own device) names mtk-iommu: arm-v7s', () => {
    const g = guessProfile(records([mapLine(0x4000_0000n, 64n * K), faultLine('mtk-iommu', '10205000.iommu', 0x4001_0040n)]));
    expect(g.name).toBe('arm-v7s');
    expect(g.confidence).toBe('high');
    expect(g.why).toContain('fault records name the mtk-iommu driver');
    expect(g.why).not.toContain('no driver named');
    expect(reasonFor(g, 'intel-vtd')).toContain('names the mtk-iommu driver');
  });

  it('OMAP: the omap-iommu fault and the 1M page removed for a 4K unmap', () => {
    const g = guessProfile(records([...overUnmap(0x6000_0000n, M), faultLine('omap-iommu', '480bd400.mmu', 0x600c_1000n)]));
    expect(g.name).toBe('omap');
    expect(g.confidence).toBe('high');
    expect(g.why).toContain('omap-iommu');
    expect(g.why).toContain('a whole 1M page');
  });

  it('OMAP without a fault: 1M and 64K whole-page unmaps fit omap and amd-v1; device-tree device names rule out x86', () => {
    const lines = [attachLine('480bc000.isp'), ...overUnmap(0x6000_0000n, M), ...overUnmap(0x6010_0000n, 64n * K)];
    const withoutNames = guessProfile(records(lines.slice(1)));
    expect(withoutNames.name).toBe('amd-v1'); // both fit; without a platform hint, x86 comes first
    const g = guessProfile(records(lines));
    expect(g.name).toBe('omap');
    expect(g.confidence).toBe('medium');
    expect(reasonFor(g, 'amd-v1')).toContain('device-tree device names (e.g. 480bc000.isp)');
  });

  it('a fault naming the master (nvme on a PCI device) is not a driver name; only AMD-Vi reports faults that way', () => {
    const g = guessProfile(records([mapLine(0x10_0000n, 8n * K), faultLine('nvme', '0000:02:00.0', 0x40_0200n)]));
    expect(g.evidence.filter((e) => e.tier === 'driver')).toEqual([]);
    expect(g.name).toBe('amd-v1');
    expect(g.confidence).toBe('medium');
    expect(reasonFor(g, 'intel-vtd')).toContain('VT-d never calls report_iommu_fault()');
  });

  it('arm-smmu in the kernel log and 64K pages in mapping: lines: arm-lpae-64k; 4K-aligned maps rule out the 16K and 64K granules', () => {
    const log = ['[    0.912000] arm-smmu 5040000.iommu: probing hardware configuration...'];
    const m64 = records([mapLine(0x1_0000_0000n, 128n * K), '[  612.004413] iommu: mapping: iova 0x100000000 pa 0x0000000200000000 pgsize 0x10000 count 2']);
    const g = guessProfile(m64, log);
    expect(g.name).toBe('arm-lpae-64k');
    expect(ruledOut(g)).toContain('arm-lpae-4k'); // 64K is not a 4K-granule page
    expect(ruledOut(g)).toContain('arm-v7s'); // IOVAs beyond 32 bits
    const g4 = guessProfile(records([mapLine(0x1_0000_1000n, 4n * K)]), log);
    expect(g4.name).toBe('arm-lpae-4k');
    expect(reasonFor(g4, 'arm-lpae-16k')).toContain("below arm-lpae-16k's smallest page, 16K");
    expect(reasonFor(g4, 'arm-lpae-64k')).toContain("below arm-lpae-64k's smallest page, 64K");
  });

  it('IOVAs beyond 48 bits need 5-level VT-d or AMD; beyond 32 bits rule out OMAP and v7s', () => {
    const g = guessProfile(records([mapLine(0x1_0000_0000_0000n, 4n * K)]));
    expect(g.name).toBe('intel-vtd-5level');
    expect(reasonFor(g, 'intel-vtd')).toContain("beyond intel-vtd's 48-bit input");
    expect(reasonFor(g, 'omap')).toContain("beyond omap's 32-bit input");
    expect(ruledOut(g)).not.toContain('amd-v1');
  });

  it('without evidence, intel-vtd is assumed and the why says so', () => {
    const g = guessProfile([]);
    expect(g.name).toBe('intel-vtd');
    expect(g.confidence).toBe('assumed');
    expect(g.why).toContain('is assumed');
    // The strict profiles are never inferred, and say why.
    expect(reasonFor(g, 'vfio-type1v2')).toContain('never inferred');
  });
});

describe('conflicting evidence: the stronger wins and the loser is reported', () => {
  it('a driver name outweighs page sizes', () => {
    const g = guessProfile(records([faultLine('mtk-iommu', '10205000.iommu', 0x4000_0000n), ...overUnmap(0x4010_0000n, 8n * K)]));
    expect(g.name).toBe('arm-v7s');
    expect(g.conflicts).toHaveLength(1);
    expect(g.conflicts[0]).toMatch(/arm-v7s never removes more than asked.*\(page-size evidence, overruled\)/);
    expect(g.why).toContain('but arm-v7s never removes more than asked');
    // The loser, amd-v1, had the page sizes for it, and is ruled out by the driver name.
    expect(reasonFor(g, 'amd-v1')).toContain('names the mtk-iommu driver');
  });

  it('page sizes outweigh device names', () => {
    const g = guessProfile(records([attachLine('1c00000.gpu'), ...overUnmap(0x4010_0000n, 8n * K)]));
    expect(g.name).toBe('amd-v1');
    expect(g.conflicts).toEqual([expect.stringContaining('device-tree device names (e.g. 1c00000.gpu)')]);
  });

  it('two driver names cancel out and the page sizes decide', () => {
    const ev = new ProfileEvidence();
    ev.addLogLine('[    0.098703] DMAR: IOMMU enabled');
    ev.addLogLine('[    2.211271] pci 0000:00:02.0: AMD-Vi: Found IOMMU cap 0x40');
    for (const r of records(overUnmap(0x10_0000n, 16n * K))) ev.add(r);
    const g = ev.result();
    expect(g.name).toBe('amd-v1');
    expect(g.conflicts).toEqual([expect.stringContaining('names the DMAR driver')]);
  });
});

describe('inputs', () => {
  it('kernel-log lines that name an IOMMU driver, and those that do not', () => {
    expect(driverOfLogLine('[    0.098703] DMAR: IOMMU enabled')).toEqual({ driver: 'DMAR' });
    expect(driverOfLogLine('[    0.340266] DMAR-IR: IOAPIC id 0 under DRHD base  0xfed90000 IOMMU 0')).toEqual({ driver: 'DMAR' });
    expect(driverOfLogLine('[    0.038577] ACPI: DMAR 0x000000007FFE2325 000080 (v01 BOCHS  BXPC     00000001 BXPC 00000001)')).toBeUndefined();
    expect(driverOfLogLine('[    2.211271] pci 0000:00:02.0: AMD-Vi: Found IOMMU cap 0x40')).toEqual({ driver: 'AMD-Vi' });
    // The IOMMUv2 module prints this on machines without an AMD IOMMU (it is in Intel boot logs).
    expect(driverOfLogLine('[    3.001000] AMD-Vi: AMD IOMMUv2 functionality not available on this system - This is not a bug.')).toBeUndefined();
    expect(driverOfLogLine('May 30 05:04:29 host kernel: AMD-Vi: AMD IOMMUv2 driver by Joerg Roedel <jroedel@suse.de>')).toBeUndefined();
    expect(driverOfLogLine('[ 12.5] mtk-iommu 10205000.iommu: fault type=0x5 iova=0x40000000 pa=0x0 larb=0 port=0 layer=0 read')).toEqual({
      driver: 'mtk-iommu',
      device: '10205000.iommu',
    });
    expect(driverOfLogLine('[ 12.5] mtk-iommu-v1 10205000.iommu: fault type=0x5')).toEqual({ driver: 'mtk-iommu-v1', device: '10205000.iommu' });
    expect(driverOfLogLine('[ 1.0] rk_iommu ff650800.iommu: Page fault at 0x0000000001000000 of type read')?.driver).toBe('rk_iommu');
    expect(driverOfLogLine('[ 1.0] nvme 0000:02:00.0: 8/0/0 default/read/poll queues')).toBeUndefined();
  });

  it('a debug-line prefix naming an IOMMU driver counts as a driver name', () => {
    const text = '[  612.0] omap-iommu 480bd400.mmu: map: iova 0x60000000 pa 0x0000000080000000 size 0x100000\n';
    const rs = [...parseTraceText(text)].flatMap(({ result }) => (result.kind === 'record' ? [result.record] : []));
    expect(rs[0]?.prefix).toBe('omap-iommu 480bd400.mmu');
    const g = guessProfile(rs);
    expect(g.name).toBe('omap');
    expect(g.why).toContain('debug lines are printed by the omap-iommu driver');
  });

  it('records fed in any order give the same answer', () => {
    const rs = records([
      attachLine('0000:02:00.0'),
      ...overUnmap(0xfff0_0000n, M),
      ...overUnmap(0xffee_a000n, 8n * K),
      ...overUnmap(0x20_0000n, 2n * M),
      mapLine(0x1_0000_1000n, 4n * K),
      unmapLine(0x3000_0000n, 16n * K, 4n * K),
      faultLine('nvme', '0000:02:00.0', 0x40_0200n),
      faultLine('nvme', '0000:01:00.0', 0x40_0300n),
      attachLine('480bc000.isp'),
      attachLine('47000000.dsp'),
    ]);
    const logs = ['[ 1.0] DMAR: IOMMU enabled', '[ 2.0] pci 0000:00:02.0: AMD-Vi: Found IOMMU cap 0x40', '[ 3.0] rk_iommu ff650800.iommu: x'];
    const first = guessProfile(rs, logs);
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const shuffle = <T>(a: T[]) =>
      a
        .map((v) => [rnd(), v] as const)
        .sort((x, y) => x[0] - y[0])
        .map(([, v]) => v);
    for (let i = 0; i < 5; i++) {
      const ev = new ProfileEvidence();
      const items: Array<TraceRecord | string> = shuffle([...rs, ...logs]);
      for (const x of items)
        if (typeof x === 'string') ev.addLogLine(x);
        else ev.add(x);
      expect(ev.result()).toEqual(first);
    }
    // The examples kept are the smallest, not the first seen.
    expect(JSON.stringify(first.evidence)).toContain('47000000.dsp');
  });
});

describe('sampling a large file over its whole extent', () => {
  it('sampleRanges: one range for a small file; evenly spaced windows from the first byte to the last for a large one', () => {
    expect(sampleRanges(0)).toEqual([]);
    expect(sampleRanges(1000, { windows: 4, windowBytes: 300 })).toEqual([{ start: 0, end: 1000 }]);
    const size = 1_000_003;
    const r = sampleRanges(size, { windows: 7, windowBytes: 4096 });
    expect(r).toHaveLength(7);
    expect(r[0]!.start).toBe(0);
    expect(r[6]!.end).toBe(size);
    for (const w of r) expect(w.end - w.start).toBe(4096);
    const gaps = r.slice(1).map((w, i) => w.start - r[i]!.start);
    for (const g of gaps) {
      expect(g).toBeGreaterThan(4096); // disjoint, in order
      expect(Math.abs(g - gaps[0]!)).toBeLessThanOrEqual(1); // evenly spaced
    }
    expect(sampleRanges(10_000, { windows: 1, windowBytes: 100 })).toEqual([{ start: 0, end: 100 }]);
  });

  it('linesInRange: whole lines only, the partial first line skipped; windows that tile a file yield each line once', () => {
    const lines = Array.from({ length: 200 }, (_, i) => `line ${i} ${'x'.repeat((i * 37) % 91)}`);
    const text = `${lines.join('\n')}\nlast line without newline`;
    const buf = new TextEncoder().encode(text);
    for (const step of [1, 7, 64, 1000, buf.length]) {
      const seen: string[] = [];
      for (let start = 0; start < buf.length; start += step) {
        const range = { start, end: Math.min(buf.length, start + step) };
        const from = Math.max(0, start - 1);
        const got = linesInRange(buf.subarray(from), from, range, buf.length);
        for (const l of got) {
          // Each line starts inside its window and is a whole line of the file.
          expect(l.offset).toBeGreaterThanOrEqual(range.start);
          expect(l.offset).toBeLessThan(range.end);
          expect(l.offset === 0 || buf[l.offset - 1] === 0x0a).toBe(true);
        }
        seen.push(...got.map((l) => l.text));
      }
      expect(seen).toEqual([...lines, 'last line without newline']);
    }
    // A window in the middle of a line starts at the next one; the file's unterminated last line says so.
    const mid = linesInRange(buf, 0, { start: 3, end: buf.length }, buf.length);
    expect(mid[0]!.text).toBe(lines[1]);
    expect(mid.at(-1)).toMatchObject({ text: 'last line without newline', unterminated: true });
    // A buffer that ends before the last line's newline (not at the end of the file) leaves it out.
    expect(linesInRange(buf.subarray(0, 20), 0, { start: 0, end: 20 }, buf.length).map((l) => l.text)).toEqual([lines[0]]);
  });

  describe('guessProfileFromFile', () => {
    const dir = mkdtempSync(join(tmpdir(), 'profile-guess-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('judges a big trace on its whole extent: evidence past the first 2 MiB is found', async () => {
      const body: string[] = ['# tracer: nop', '#'];
      for (let i = 0; body.length < 60_000; i++) {
        const iova = BigInt(0x1000_0000 + (i % 4096) * 4096);
        body.push(mapLine(iova, 4n * K), unmapLine(iova, 4n * K, 4n * K));
      }
      body.push(...overUnmap(0xffef_0000n, 64n * K), ...overUnmap(0xffee_a000n, 8n * K));
      const path = join(dir, 'big.trace');
      const text = `${body.join('\n')}\n`;
      writeFileSync(path, text);
      expect(text.length).toBeGreaterThan(4 * 1024 * 1024);

      // What the first 2 MiB alone say (the defect): nothing but 4K maps, so intel-vtd is assumed.
      const head = text.slice(0, 2 * 1024 * 1024);
      const headRecords = [...parseTraceText(head.slice(0, head.lastIndexOf('\n') + 1))].flatMap(({ result }) =>
        result.kind === 'record' ? [result.record] : [],
      );
      expect(guessProfile(headRecords).name).toBe('intel-vtd');

      const g = await guessProfileFromFile(path, { windows: 8, windowBytes: 64 * 1024 });
      expect(g.name).toBe('amd-v1');
      expect(g.why).toContain('8K and 64K');
      expect(g.sampled.ranges).toHaveLength(8);
      expect(g.sampled.ranges.at(-1)!.end).toBe(g.sampled.fileSize);
      expect(g.sampled.bytes).toBeLessThan(g.sampled.fileSize / 4);
    });

    it('pairs unmap this: / unmapped: debug lines within a window, and reads DMAR: lines', async () => {
      const dmesg = [
        '[  613.240117] iommu: unmap this: iova 0x7f601000 size 0x1000',
        '[  613.240125] iommu: unmapped: iova 0x7f601000 size 0x2000',
        '[  613.240200] iommu: unmap this: iova 0x7f700000 size 0x1000',
        '[  613.240205] iommu: unmapped: iova 0x7f700000 size 0x1000',
        '',
      ].join('\n');
      const amd = join(dir, 'amd-dmesg.log');
      writeFileSync(amd, dmesg);
      const g = await guessProfileFromFile(amd);
      expect(g.name).toBe('amd-v1');
      expect(g.why).toContain('a whole 8K page');
      const intel = join(dir, 'intel-dmesg.log');
      writeFileSync(intel, `[    0.098703] DMAR: IOMMU enabled\n${dmesg}`);
      const gi = await guessProfileFromFile(intel);
      expect(gi.name).toBe('intel-vtd');
      expect(gi.conflicts).toEqual([expect.stringContaining('8K is not a size intel-vtd can remove')]);
    });
  });
});
