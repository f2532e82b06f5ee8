import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseAddress, parseSize, U64_MAX } from '../../src/core/address.js';
import { MAX_LINE_LENGTH, parseTraceLine, parseTraceText, type ParsedLine, type TraceRecord } from '../../src/import/parse.js';

const EXAMPLES = new URL('../../examples/', import.meta.url);
const example = (name: string): string => readFileSync(new URL(name, EXAMPLES), 'utf8');

function rec(line: string): TraceRecord {
  const r = parseTraceLine(line);
  if (r.kind !== 'record') throw new Error(`expected a record for ${JSON.stringify(line)}, got ${JSON.stringify(r, bigintJson)}`);
  return r.record;
}

function err(line: string): string {
  const r = parseTraceLine(line);
  if (r.kind !== 'error') throw new Error(`expected an error for ${JSON.stringify(line)}, got ${JSON.stringify(r, bigintJson)}`);
  return r.reason;
}

function bigintJson(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : v;
}

function records(text: string): TraceRecord[] {
  const out: TraceRecord[] = [];
  for (const { lineNo, result } of parseTraceText(text)) {
    if (result.kind === 'error') throw new Error(`line ${lineNo}: ${result.reason}`);
    if (result.kind === 'record') out.push(result.record);
  }
  return out;
}

// Kernel printf, for building lines: %016llx and friends.
const h16 = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;
const pad = (s: string | number, w: number): string => String(s).padStart(w);
const padR = (s: string | number, w: number): string => String(s).padEnd(w);

const MAP_RANGE = 'IOMMU: iova=0x0000000000400000 - 0x0000000000600000 paddr=0x0000000240200000 size=2097152';
const UNMAP_RANGE = 'IOMMU: iova=0x0000000000401000 - 0x0000000000402000 size=4096 unmapped_size=2097152';

describe('ftrace text', () => {
  it('reads the reference sample', () => {
    const text = [
      '# tracer: nop',
      '#',
      '# entries-in-buffer/entries-written: 4/4   #P:8',
      '#',
      '#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION',
      '#              | |         |   |||||     |         |',
      `     vfio-test-1201    [003] .....   511.102331: map: ${MAP_RANGE}`,
      `     vfio-test-1201    [003] .....   511.102390: unmap: ${UNMAP_RANGE}`,
      '   kworker/3:1-87      [003] d.h..   511.102402: io_page_fault: IOMMU:nvme 0000:02:00.0 iova=0x0000000000400200 flags=0x0000',
      '       <idle>-0        [001] d.h1.   511.200000: io_page_fault: IOMMU:e1000e 0000:00:19.0 iova=0x00000000fee0f000 flags=0x0001',
    ].join('\n');
    const results = [...parseTraceText(`${text}\n`)].map((r) => r.result);
    expect(results.slice(0, 6)).toEqual(Array.from({ length: 6 }, () => ({ kind: 'skip', why: 'header' })));
    const recs = records(`${text}\n`);
    expect(recs).toEqual([
      {
        event: 'map',
        source: 'ftrace',
        task: 'vfio-test',
        pid: 1201,
        cpu: 3,
        flags: '.....',
        timestamp: '511.102331',
        timestampNs: 511_102_331_000n,
        iova: 0x400000n,
        iovaEnd: 0x600000n,
        paddr: 0x240200000n,
        size: 2097152n,
      },
      {
        event: 'unmap',
        source: 'ftrace',
        task: 'vfio-test',
        pid: 1201,
        cpu: 3,
        flags: '.....',
        timestamp: '511.102390',
        timestampNs: 511_102_390_000n,
        iova: 0x401000n,
        iovaEnd: 0x402000n,
        size: 4096n,
        unmappedSize: 2097152n,
      },
      {
        event: 'io_page_fault',
        source: 'ftrace',
        task: 'kworker/3:1',
        pid: 87,
        cpu: 3,
        flags: 'd.h..',
        timestamp: '511.102402',
        timestampNs: 511_102_402_000n,
        driver: 'nvme',
        device: '0000:02:00.0',
        iova: 0x400200n,
        faultFlags: 0,
      },
      {
        event: 'io_page_fault',
        source: 'ftrace',
        task: '<idle>',
        pid: 0,
        cpu: 1,
        flags: 'd.h1.',
        timestamp: '511.200000',
        timestampNs: 511_200_000_000n,
        driver: 'e1000e',
        device: '0000:00:19.0',
        iova: 0xfee0f000n,
        faultFlags: 1,
      },
    ]);
  });

  it.each([
    ['4 characters (old kernels)', 'd.h.'],
    ['5 characters', '.N...'],
    ['7 characters', '....1..'],
  ])('accepts a flags column of %s', (_what, flags) => {
    const r = rec(`  gst-launch-1.0-606   [000] ${flags}  1302.445180: map: ${MAP_RANGE}`);
    expect(r.flags).toBe(flags);
    expect(r.task).toBe('gst-launch-1.0');
    expect(r.pid).toBe(606);
  });

  it('accepts a line without the flags column (irq-info off)', () => {
    const r = rec(`       vfio-test-1201  [003]   511.102331: map: ${MAP_RANGE}`);
    expect(r.flags).toBeUndefined();
    expect(r.source).toBe('ftrace');
    expect(r.timestamp).toBe('511.102331');
  });

  it('rejects a flags column of another width', () => {
    expect(err(`  vfio-test-1201  [003] ......   511.102331: map: ${MAP_RANGE}`)).toBe(
      'ftrace: flags column "......" has 6 characters (expected 4, 5 or 7, or none)',
    );
  });

  it('reads the record-tgid column, and (-------) as unknown', () => {
    const a = rec(` qemu-system-x86-4121    (   4098) [011] .......  8114.002311: map: ${MAP_RANGE}`);
    expect([a.task, a.pid, a.tgid, a.cpu]).toEqual(['qemu-system-x86', 4121, 4098, 11]);
    const b = rec(`          <idle>-0       (-------) [004] d.h1...  8114.732013: unmap: ${UNMAP_RANGE}`);
    expect([b.task, b.pid, b.tgid, b.cpu]).toEqual(['<idle>', 0, undefined, 4]);
    expect('tgid' in b).toBe(false);
    const c = rec(`  bash-77 (77) [000] .... 1.000000: map: ${MAP_RANGE}`);
    expect(c.tgid).toBe(77);
  });

  it.each([
    ['kworker/0:0-537', 'kworker/0:0', 537],
    ['<idle>-0', '<idle>', 0],
    ['gst-launch-1.0-606', 'gst-launch-1.0', 606],
    ['Web Content-1234', 'Web Content', 1234],
    ['CPU 0/KVM-4125', 'CPU 0/KVM', 4125],
    ['<...>-4130', '<...>', 4130],
    ['queue0:src-611', 'queue0:src', 611],
    ['a-b-c--9', 'a-b-c-', 9],
    ['x-12 y-5', 'x-12 y', 5],
    ['12-34', '12', 34],
    ['-5', '-5', undefined],
  ])('task %j: the PID is the number after the last dash', (taskPid, task, pid) => {
    const line = `${pad(taskPid, 16)}   [002] ..... 10.000001: map: ${MAP_RANGE}`;
    if (pid === undefined) {
      // A task of just "-5" has no name before the dash: not an ftrace record.
      expect(parseTraceLine(line).kind).not.toBe('record');
      return;
    }
    const r = rec(line);
    expect([r.task, r.pid, r.cpu]).toEqual([task, pid, 2]);
  });

  it('keeps the timestamp text and converts it to nanoseconds', () => {
    expect(rec(`  a-1 [000] .... 0.000001: map: ${MAP_RANGE}`).timestampNs).toBe(1000n);
    const ns = rec(`  a-1 [000] .... 7.123456789: map: ${MAP_RANGE}`);
    expect([ns.timestamp, ns.timestampNs]).toEqual(['7.123456789', 7_123_456_789n]);
    // trace_clock=counter / x86-tsc: a raw count, not seconds.
    const counter = rec(`  a-1 [000] .... 98765432101: map: ${MAP_RANGE}`);
    expect([counter.timestamp, counter.timestampNs]).toEqual(['98765432101', undefined]);
  });

  it('skips other events, naming them, and function-tracer lines', () => {
    expect(
      parseTraceLine(
        ' qemu-system-x86-4121    (   4098) [011] d..2...  8114.002457: sched_switch: prev_comm=qemu-system-x86 prev_pid=4121 prev_prio=120 prev_state=S ==> next_comm=CPU 0/KVM next_pid=4125 next_prio=120',
      ),
    ).toEqual({ kind: 'skip', why: 'other-event', event: 'sched_switch' });
    expect(parseTraceLine('            bash-1975  [001] .....   141.258484: do_sys_openat2 <-__x64_sys_openat')).toEqual({
      kind: 'skip',
      why: 'other-event',
      event: 'do_sys_openat2',
    });
    expect(parseTraceLine('  a-1 [000] ..... 1.000000: tracing_mark_write: map: iova 0x1000').kind).toBe('skip');
    // Names such as "constructor" are not looked up on an object prototype.
    expect(parseTraceLine('  a-1 [000] ..... 1.000000: constructor: x')).toMatchObject({ kind: 'skip', why: 'other-event' });
  });

  it('reads the system-qualified event name iommu:map', () => {
    expect(rec(`  a-1 [000] ..... 1.000000: iommu:map: ${MAP_RANGE}`).event).toBe('map');
  });

  it('skips header lines and the ftrace buffer-start marker', () => {
    for (const line of [
      '# tracer: nop',
      '#',
      '#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION',
      '##### CPU 2 buffer started ####',
      '   # indented',
    ]) {
      expect(parseTraceLine(line)).toEqual({ kind: 'skip', why: 'header' });
    }
    for (const line of ['', '   ', '\t', '\r', '\r\n', '\n']) expect(parseTraceLine(line)).toEqual({ kind: 'skip', why: 'blank' });
  });

  it('ignores CRLF and a trailing newline', () => {
    const plain = rec(`  a-1 [000] ..... 1.000000: map: ${MAP_RANGE}`);
    expect(rec(`  a-1 [000] ..... 1.000000: map: ${MAP_RANGE}\r`)).toEqual(plain);
    expect(rec(`  a-1 [000] ..... 1.000000: map: ${MAP_RANGE}\r\n`)).toEqual(plain);
    expect(rec(`  a-1 [000] ..... 1.000000: map: ${MAP_RANGE}\n`)).toEqual(plain);
    const crlf = [...parseTraceText(`# tracer: nop\r\n  a-1 [000] ..... 1.000000: map: ${MAP_RANGE}\r\n`)];
    expect(crlf.map((r) => r.result.kind)).toEqual(['skip', 'record']);
  });
});

describe('event bodies', () => {
  const at = (ev: string, body: string): string => `  t-1 [000] ..... 1.000000: ${ev}: ${body}`;

  it('map and unmap, old form (before v5.17)', () => {
    expect(rec(at('map', 'IOMMU: iova=0x0000000060000000 paddr=0x0000000087400000 size=1048576'))).toMatchObject({
      event: 'map',
      iova: 0x60000000n,
      paddr: 0x87400000n,
      size: 1048576n,
    });
    const u = rec(at('unmap', 'IOMMU: iova=0x0000000060042000 size=4096 unmapped_size=1048576'));
    expect(u).toMatchObject({ event: 'unmap', iova: 0x60042000n, size: 4096n, unmappedSize: 1048576n });
    expect('iovaEnd' in u).toBe(false);
  });

  it('map and unmap, range form, and the vendor dev= field', () => {
    expect(rec(at('map', MAP_RANGE))).toMatchObject({ iova: 0x400000n, iovaEnd: 0x600000n, paddr: 0x240200000n, size: 0x200000n });
    expect(rec(at('unmap', UNMAP_RANGE))).toMatchObject({ iova: 0x401000n, iovaEnd: 0x402000n, size: 4096n, unmappedSize: 0x200000n });
    expect(rec(at('map', 'IOMMU: dev=0000:03:00.0 iova=0x0000000000400000 - 0x0000000000600000 paddr=0x0000000240200000 size=2097152')).dev).toBe(
      '0000:03:00.0',
    );
    expect(rec(at('unmap', 'IOMMU: dev=ff200000.smmu iova=0x0000000000401000 size=4096 unmapped_size=0'))).toMatchObject({
      dev: 'ff200000.smmu',
      unmappedSize: 0n,
    });
  });

  it('accepts a range end that wrapped at 2^64, as the kernel computes it in u64', () => {
    const r = rec(at('unmap', 'IOMMU: iova=0xfffffffffffff000 - 0x0000000000000000 size=4096 unmapped_size=4096'));
    expect([r.iova, r.iovaEnd, r.size]).toEqual([0xfffffffffffff000n, 0n, 4096n]);
  });

  it('io_page_fault, including an empty driver name', () => {
    expect(rec(at('io_page_fault', 'IOMMU:omap-iommu 480bd400.mmu iova=0x00000000600c1000 flags=0x0000'))).toMatchObject({
      driver: 'omap-iommu',
      device: '480bd400.mmu',
      iova: 0x600c1000n,
      faultFlags: 0,
    });
    expect(rec(at('io_page_fault', 'IOMMU: 0000:00:02.0 iova=0x0000000000001000 flags=0x0021'))).toMatchObject({
      driver: '',
      device: '0000:00:02.0',
      faultFlags: 0x21,
    });
  });

  it('attach, detach, add to group, remove from group', () => {
    expect(rec(at('attach_device_to_domain', 'IOMMU: device=0000:03:00.0'))).toMatchObject({ event: 'attach', device: '0000:03:00.0' });
    expect(rec(at('detach_device_from_domain', 'IOMMU: device=480bc000.isp'))).toMatchObject({ event: 'detach', device: '480bc000.isp' });
    expect(rec(at('add_device_to_group', 'IOMMU: groupID=14 device=0000:03:00.0'))).toMatchObject({
      event: 'add_to_group',
      groupId: 14,
      device: '0000:03:00.0',
    });
    expect(rec(at('remove_device_from_group', 'IOMMU: groupID=0 device=0000:00:1f.3'))).toMatchObject({
      event: 'remove_from_group',
      groupId: 0,
      device: '0000:00:1f.3',
    });
  });
});

describe('trace-cmd report', () => {
  it('reads records with padding after the event name and skips the preamble', () => {
    const text = [
      'cpus=8',
      'version = 6',
      'CPU 5 is empty',
      '       fio-3310  [001]  2048.000117: map:                  IOMMU: iova=0x00000000ffff0000 - 0x00000000ffff1000 paddr=0x000000011b2c4000 size=4096',
      '       fio-3310  [001]  2048.000190: sched_switch:         fio:3310 [120] S ==> swapper/1:0 [120]',
      '       fio-3310  [001]  2048.000204: unmap:                IOMMU: iova=0x00000000ffff0000 - 0x00000000ffff1000 size=4096 unmapped_size=4096',
      '',
    ].join('\n');
    const results = [...parseTraceText(text)].map((r) => r.result);
    expect(results.map((r) => r.kind)).toEqual(['skip', 'skip', 'skip', 'record', 'skip', 'record']);
    expect(results.slice(0, 3)).toEqual([0, 1, 2].map(() => ({ kind: 'skip', why: 'header' })));
    const recs = records(text);
    expect(recs[0]).toEqual({
      event: 'map',
      source: 'trace-cmd',
      task: 'fio',
      pid: 3310,
      cpu: 1,
      timestamp: '2048.000117',
      timestampNs: 2_048_000_117_000n,
      iova: 0xffff0000n,
      iovaEnd: 0xffff1000n,
      paddr: 0x11b2c4000n,
      size: 4096n,
    });
    expect(recs[1]).toMatchObject({ event: 'unmap', source: 'trace-cmd', unmappedSize: 4096n });
  });
});

describe('kernel log', () => {
  it('reads the iommu.c debug lines (v5.15+ count form)', () => {
    const text = [
      '[  612.004411] iommu: map: iova 0x7f000000 pa 0x00000003a1400000 size 0x400000',
      '[  612.004413] iommu: mapping: iova 0x7f000000 pa 0x00000003a1400000 pgsize 0x200000 count 2',
      '[  613.118002] iommu: unmap this: iova 0x7f000000 size 0x400000',
      '[  613.118010] iommu: unmapped: iova 0x7f000000 size 0x200000',
      '[  613.118012] iommu: unmapped: iova 0x7f200000 size 0x200000',
      '',
    ].join('\n');
    expect(records(text)).toEqual([
      {
        event: 'debug_map',
        source: 'dmesg',
        prefix: 'iommu',
        iova: 0x7f000000n,
        paddr: 0x3a1400000n,
        size: 0x400000n,
        timestamp: '612.004411',
        timestampNs: 612_004_411_000n,
      },
      {
        event: 'debug_mapping',
        source: 'dmesg',
        prefix: 'iommu',
        iova: 0x7f000000n,
        paddr: 0x3a1400000n,
        pgsize: 0x200000n,
        count: 2n,
        timestamp: '612.004413',
        timestampNs: 612_004_413_000n,
      },
      { event: 'debug_unmap', source: 'dmesg', prefix: 'iommu', iova: 0x7f000000n, size: 0x400000n, timestamp: '613.118002', timestampNs: 613_118_002_000n },
      {
        event: 'debug_unmapped',
        source: 'dmesg',
        prefix: 'iommu',
        iova: 0x7f000000n,
        unmappedSize: 0x200000n,
        timestamp: '613.118010',
        timestampNs: 613_118_010_000n,
      },
      {
        event: 'debug_unmapped',
        source: 'dmesg',
        prefix: 'iommu',
        iova: 0x7f200000n,
        unmappedSize: 0x200000n,
        timestamp: '613.118012',
        timestampNs: 613_118_012_000n,
      },
    ]);
  });

  it('reads the older forms: no count (v4.x), decimal pgsize and bare hex unmapped size (v3.2)', () => {
    expect(rec('[  9.1] iommu: mapping: iova 0x7f000000 pa 0x00000003a1400000 pgsize 0x200000')).toMatchObject({ pgsize: 0x200000n });
    expect('count' in rec('[  9.1] iommu: mapping: iova 0x7f000000 pa 0x00000003a1400000 pgsize 0x200000')).toBe(false);
    // v3.2: no pr_fmt prefix, "pa 0x%lx", "pgsize %lu", "unmapped: ... size %lx".
    expect(rec('[   41.503112] map: iova 0x60000000 pa 0x87400000 size 0x100000')).toMatchObject({
      event: 'debug_map',
      paddr: 0x87400000n,
      size: 0x100000n,
    });
    expect('prefix' in rec('[   41.503112] map: iova 0x60000000 pa 0x87400000 size 0x100000')).toBe(false);
    expect(rec('[   41.503113] mapping: iova 0x60000000 pa 0x87400000 pgsize 1048576')).toMatchObject({ pgsize: 1048576n });
    expect(rec('[   41.503114] unmap this: iova 0x60042000 size 0x1000')).toMatchObject({ event: 'debug_unmap', size: 0x1000n });
    expect(rec('[   41.503115] unmapped: iova 0x60042000 size 100000')).toMatchObject({ unmappedSize: 0x100000n });
  });

  it('reads device and dynamic-debug prefixes, and lines without a time stamp', () => {
    expect(rec('omap-iommu 480bd400.mmu: unmap this: iova 0x60042000 size 0x1000')).toMatchObject({
      event: 'debug_unmap',
      prefix: 'omap-iommu 480bd400.mmu',
    });
    expect(rec('[  612.0] iommu:__iommu_map:2461: iommu: map: iova 0x1000 pa 0x0000000000002000 size 0x1000')).toMatchObject({
      prefix: 'iommu:__iommu_map:2461: iommu',
      iova: 0x1000n,
    });
    expect(rec('iommu: unmapped: iova 0x1000 size 0x1000')).toMatchObject({ event: 'debug_unmapped' });
  });

  it('reads <level>, dmesg -x, syslog, journalctl and printk-caller prefixes', () => {
    const msg = 'iommu: unmap this: iova 0x7f000000 size 0x400000';
    expect(rec(`<7>[  613.118002] ${msg}`)).toMatchObject({ timestamp: '613.118002', size: 0x400000n });
    expect(rec(`kern  :debug : [  613.118002] ${msg}`)).toMatchObject({ timestamp: '613.118002' });
    expect(rec(`Nov 23 10:00:00 host kernel: [  613.118002] ${msg}`)).toMatchObject({ timestamp: '613.118002', timestampNs: 613_118_002_000n });
    const journal = rec(`Nov 23 10:00:00 host kernel: ${msg}`);
    expect([journal.timestamp, journal.timestampNs]).toEqual(['Nov 23 10:00:00', undefined]);
    expect(rec(`2026-11-23T10:00:00.123456+01:00 host kernel: ${msg}`).timestamp).toBe('2026-11-23T10:00:00.123456+01:00');
    expect(rec(`[  613.118002] host kernel: ${msg}`)).toMatchObject({ timestamp: '613.118002' });
    expect(rec(`kernel: ${msg}`)).toMatchObject({ event: 'debug_unmap' });
    expect(rec(`[  613.118002] [ T1201] ${msg}`)).toMatchObject({ pid: 1201 });
    expect(rec(`[  613.118002] [    C3] ${msg}`)).toMatchObject({ cpu: 3 });
    expect(rec(`[Mon Nov 23 10:00:00 2026] ${msg}`)).toMatchObject({ timestamp: 'Mon Nov 23 10:00:00 2026' });
    expect(rec(`[  613.118002 <    0.000008>] ${msg}`)).toMatchObject({ timestamp: '613.118002' });
  });

  it('reads tracepoints printed with tp_printk, every event', () => {
    expect(rec(`[  612.004420] map: ${MAP_RANGE}`)).toMatchObject({ event: 'map', source: 'dmesg-tp', iova: 0x400000n, timestamp: '612.004420' });
    expect(rec(`unmap: ${UNMAP_RANGE}`)).toMatchObject({ event: 'unmap', source: 'dmesg-tp' });
    expect(rec('[ 1.0] io_page_fault: IOMMU:nvme 0000:02:00.0 iova=0x0000000000400200 flags=0x0000')).toMatchObject({ event: 'io_page_fault' });
    expect(rec('[ 1.0] attach_device_to_domain: IOMMU: device=0000:02:00.0')).toMatchObject({ event: 'attach' });
    expect(rec('[ 1.0] detach_device_from_domain: IOMMU: device=0000:02:00.0')).toMatchObject({ event: 'detach' });
    expect(rec('[ 1.0] add_device_to_group: IOMMU: groupID=3 device=0000:02:00.0')).toMatchObject({ event: 'add_to_group', groupId: 3 });
    expect(rec('[ 1.0] remove_device_from_group: IOMMU: groupID=3 device=0000:02:00.0')).toMatchObject({ event: 'remove_from_group' });
  });

  it('skips other kernel messages, including iommu.c "unaligned:" errors', () => {
    for (const line of [
      '[    0.412087] DMAR: IOMMU enabled',
      '[    1.930311] iommu: Default domain type: Translated',
      '[  613.377208] iommu: unaligned: iova 0x7f801200 size 0x1000 min_pagesz 0x1000',
      '[  100.000000] usb 1-1: new high-speed USB device number 2 using xhci_hcd',
      'map: something else',
      '[  613.1]',
      'random words',
    ]) {
      expect(parseTraceLine(line), line).toEqual({ kind: 'skip', why: 'other-text' });
    }
  });
});

describe('errors', () => {
  const at = (ev: string, body: string): string => `  t-1 [000] ..... 1.000000: ${ev}: ${body}`;

  it('names the field and the problem', () => {
    expect(err(at('unmap', 'IOMMU: iova=0x0000000000001000 size=abc unmapped_size=4096'))).toBe('unmap: size=abc is not a decimal number');
    expect(err(at('map', 'IOMMU: iova=0x0000000000001000 size=4096'))).toBe('map: missing paddr=');
    expect(err(at('map', 'IOMMU: paddr=0x0000000000001000 size=4096'))).toBe('map: missing iova=');
    expect(err(at('unmap', 'IOMMU: iova=0x0000000000001000 size=4096'))).toBe('unmap: missing unmapped_size=');
    expect(err(at('map', 'IOMMU: iova=0x00000000000010g0 paddr=0x0000000000001000 size=4096'))).toBe(
      'map: iova=0x00000000000010g0 is not a hex number (expected 0x...)',
    );
    expect(err(at('map', 'IOMMU: iova=4096 paddr=0x0000000000001000 size=4096'))).toBe('map: iova=4096 is not a hex number (expected 0x...)');
    expect(err(at('map', 'IOMMU: iova=0x0000000000001000 paddr=0x0000000000001000 size=0x1000'))).toBe('map: size=0x1000 is not a decimal number');
    expect(err(at('map', 'IOMMU: iova=0x0000000000001000 paddr=0x0000000000001000 size=4096 prot=3'))).toBe('map: unknown field "prot"=');
    expect(err(at('unmap', 'IOMMU: iova=0x0000000000001000 paddr=0x0000000000001000 size=4096 unmapped_size=0'))).toBe(
      'unmap: unexpected field paddr= (only map has it)',
    );
    expect(err(at('map', 'IOMMU: iova=0x0000000000001000 iova=0x0000000000001000 paddr=0x0 size=1'))).toBe('map: iova= appears twice');
    expect(err(at('map', 'IOMMU: iova=0x0000000000001000 paddr=0x0000000000001000 size=4096 junk'))).toBe('map: unexpected text "junk"');
    expect(err(at('map', 'iova=0x0000000000001000 paddr=0x0000000000001000 size=4096'))).toBe(
      'map: body does not start with "IOMMU: ": "iova=0x0000000000001000 paddr=0x0000000000001000..."',
    );
    expect(err(at('io_page_fault', 'IOMMU:nvme 0000:02:00.0 iova=0x0000000000400200 flags=zz'))).toBe(
      'io_page_fault: flags=zz is not a hex number (expected 0x...)',
    );
    expect(err(at('io_page_fault', 'IOMMU:nvme 0000:02:00.0 iova=0x0000000000400200'))).toBe('io_page_fault: missing flags=');
    expect(err(at('io_page_fault', 'IOMMU:nvme0000:02:00.0 iova=0x0000000000400200 flags=0x0'))).toMatch(/no device name/);
    expect(err(at('add_device_to_group', 'IOMMU: groupID=x device=a'))).toBe('add_device_to_group: groupID=x is not a decimal number');
    expect(err(at('add_device_to_group', 'IOMMU: groupID=99999999999 device=a'))).toBe('add_device_to_group: groupID=99999999999 does not fit in 31 bits');
    expect(err(at('attach_device_to_domain', 'IOMMU: dev=a'))).toBe('attach_device_to_domain: expected "device=NAME", found "dev=a"');
    expect(err('[  1.0] iommu: mapping: iova 0x1000 pa 0x2000 pgsize 0x1000 count x')).toBe('debug mapping: count x is not a decimal number');
    expect(err('[  1.0] iommu: map: iova 0x1000 pa 0x2000')).toBe('debug map: missing size');
    expect(err('[  1.0] iommu: map: iova 0x1000 pa 0x2000 size 0x1000 extra 1')).toBe('debug map: unexpected field "extra"');
    expect(err('[  1.0] iommu: unmapped: iova 0x1000 size xyz')).toBe('debug unmapped: size xyz is not a hex number');
  });

  it('reports a range end that is not iova + size', () => {
    expect(err(at('map', 'IOMMU: iova=0x0000000000400000 - 0x0000000000500000 paddr=0x0000000240200000 size=2097152'))).toBe(
      'map: range end 0x0000000000500000 is not iova + size (0x0000000000400000 + 2097152 = 0x0000000000600000)',
    );
    expect(err(at('unmap', 'IOMMU: iova=0x0000000000401000 - 0x0000000000401000 size=4096 unmapped_size=4096'))).toMatch(
      /^unmap: range end 0x0000000000401000 is not iova \+ size/,
    );
    expect(err(at('map', 'IOMMU: iova=0x0000000000400000 paddr=0x0000000240200000 - 0x0000000000600000 size=2097152'))).toMatch(/^map: unexpected "-"/);
  });

  it('reports values over 64 bits, naming the field', () => {
    expect(err(at('map', 'IOMMU: iova=0x10000000000000000 paddr=0x0000000000001000 size=4096'))).toBe('map: iova=0x10000000000000000 does not fit in 64 bits');
    expect(err(at('map', 'IOMMU: iova=0x0000000000001000 paddr=0x0000000000001000 size=18446744073709551616'))).toBe(
      'map: size=18446744073709551616 does not fit in 64 bits',
    );
    expect(err(at('unmap', 'IOMMU: iova=0x0000000000001000 size=4096 unmapped_size=99999999999999999999999'))).toBe(
      'unmap: unmapped_size=99999999999999999999999 does not fit in 64 bits',
    );
    expect(err(at('io_page_fault', 'IOMMU:a b iova=0x0000000000400200 flags=0x100000000'))).toBe('io_page_fault: flags=0x100000000 does not fit in 32 bits');
    expect(err('[  1.0] iommu: mapping: iova 0x1000 pa 0x2000 pgsize 0x1000 count 18446744073709551616')).toBe(
      'debug mapping: count 18446744073709551616 does not fit in 64 bits',
    );
    // Leading zeros do not count.
    expect(rec(at('map', 'IOMMU: iova=0x00000000000000000000001000 paddr=0x0 size=00000000000000000000004096')).size).toBe(4096n);
    // The largest values are fine.
    expect(rec(at('map', 'IOMMU: iova=0xffffffffffffffff paddr=0xffffffffffffffff size=18446744073709551615')).size).toBe(U64_MAX);
  });

  it('reports a truncated line, wherever it was cut, and never returns a wrong record from an unterminated last line', () => {
    const lines = [
      `     vfio-test-1201    [003] .....   511.102331: map: ${MAP_RANGE}`,
      `     vfio-test-1201    [003] .....   511.102390: unmap: IOMMU: iova=0x0000000000401000 size=4096 unmapped_size=2097152`,
      ` qemu-system-x86-4121    (   4098) [011] .......  8114.002311: add_device_to_group: IOMMU: groupID=14 device=0000:03:00.0`,
      '[  612.004413] iommu: mapping: iova 0x7f000000 pa 0x00000003a1400000 pgsize 0x200000 count 2',
    ];
    for (const line of lines) {
      for (let cut = 0; cut < line.length; cut++) {
        const part = line.slice(0, cut);
        const r = parseTraceLine(part, { unterminated: true });
        expect(r.kind, part).not.toBe('record');
      }
    }
    // The cut points that leave a line that is still well formed are the only records.
    expect(err(`     vfio-test-1201    [003] .....   511.1`)).toBe('ftrace: line ends inside the timestamp 511.1 (truncated?)');
    expect(err(`     vfio-test-1201    [003] .....   511.102331: map: IOMMU: iova=0x0000000000400000 - 0x0000000000600000 paddr=0x00000002`)).toBe(
      'map: missing size=',
    );
    expect(
      err(`     vfio-test-1201    [003] .....   511.102331: map: IOMMU: iova=0x0000000000400000 - 0x0000000000600000 paddr=0x0000000240200000 size=`),
    ).toBe('map: size= has no value (truncated line?)');
    expect(
      err(`     vfio-test-1201    [003] .....   511.102331: map: IOMMU: iova=0x0000000000400000 - 0x0000000000600000 paddr=0x0000000240200000 size=20971`),
    ).toMatch(/^map: range end 0x0000000000600000 is not iova \+ size/);
    expect(err(`     vfio-test-1201    [003] .....   511.102331: map: IOMMU: iova=0x0000000000400000 -`)).toBe(
      'map: missing end address after "iova=0x0000000000400000 -" (truncated line?)',
    );
    expect(err(`     vfio-test-1201    [003] .....   511.102331: map: IOM`)).toBe('map: body ends after "IOM" (truncated line?)');
    expect(err(`     vfio-test-1201    [003] .....   511.102331: map:`)).toBe('map: empty body (truncated line?)');
    expect(err(`     vfio-test-1201    [003] .....   511.102331: map`)).toBe('map: line ends after the event name (truncated?)');
    expect(err(`     vfio-test-1201    [003] .....`)).toBe('ftrace: line ends after the flags column ..... (truncated?)');
    expect(err(`     vfio-test-1201    [003] `)).toBe('ftrace: line ends after the CPU column [003] (truncated?)');
    expect(err('[  612.004413] iommu: mapping: iova 0x7f000000 pa 0x00000003a1400000 pgsize')).toBe('debug mapping: pgsize has no value (truncated line?)');
    // An unterminated last line that is complete is still reported, because it cannot be told apart.
    expect(parseTraceLine(`  a-1 [000] ..... 1.000000: map: ${MAP_RANGE}`, { unterminated: true })).toMatchObject({ kind: 'error' });
    expect(parseTraceLine('# tracer: nop', { unterminated: true })).toEqual({ kind: 'skip', why: 'header' });
  });

  it('an unterminated last line cut anywhere from the event name or debug keyword on is malformed, not skipped', () => {
    const lines: Array<[string, string]> = [
      [`  gst-launch-1.0-606   [000] ....  1303.120310: unmap: IOMMU: iova=0x0000000060000000 size=1048576 unmapped_size=0`, 'unmap:'],
      [`       fio-3310  [001]  2048.000117: iommu:map:                  IOMMU: iova=0x00000000ffff0000 paddr=0x000000011b2c4000 size=4096`, 'iommu:map:'],
      [`          <idle>-0     [000] d.h.  1302.512907: io_page_fault: IOMMU:omap-iommu 480bd400.mmu iova=0x00000000600c1000 flags=0x0000`, 'io_page_fault:'],
      [`  gst-launch-1.0-606   [000] ....  1302.441207: attach_device_to_domain: IOMMU: device=480bc000.isp`, 'attach_device_to_domain:'],
      ['[  612.004420] map: IOMMU: iova=0x000000007f000000 - 0x000000007f400000 paddr=0x00000003a1400000 size=4194304', 'map:'],
      ['[  613.118002] iommu: unmap this: iova 0x7f000000 size 0x400000', 'unmap this:'],
      ['[  613.118010] iommu:iommu_unmap:2500: iommu: unmapped: iova 0x7f000000 size 0x200000', 'unmapped:'],
      ['[   41.503113] mapping: iova 0x60000000 pa 0x87400000 pgsize 1048576', 'mapping:'],
    ];
    for (const [line, from] of lines) {
      for (let cut = line.indexOf(from) + 1; cut <= line.length; cut++) {
        const part = line.slice(0, cut);
        expect(parseTraceLine(part, { unterminated: true }).kind, part).toBe('error');
      }
    }
    const cut = (line: string) => parseTraceLine(line, { unterminated: true });
    expect(cut('  gst-launch-1.0-606   [000] ....  1303.120310: unm')).toEqual({
      kind: 'error',
      reason: 'ftrace: line ends inside the event name "unm" (truncated?)',
    });
    expect(cut('  gst-launch-1.0-606   [000] ....  1303.120310: iommu:')).toEqual({
      kind: 'error',
      reason: 'ftrace: line ends inside the event name "iommu:" (truncated?)',
    });
    expect(cut('[  613.118002] iommu: unmap th')).toEqual({
      kind: 'error',
      reason: 'dmesg: line ends after "unmap th", the start of an IOMMU message (truncated?)',
    });
    expect(cut('[  612.004420] map: IOMM')).toEqual({
      kind: 'error',
      reason: 'dmesg: line ends after "map: IOMM", the start of an IOMMU message (truncated?)',
    });
    // Other events and other log text stay skipped, cut or not, and a whole line is never "cut".
    expect(cut('      queue0:src-611   [000] d...  1302.498803: sched_switch: prev_comm=queue0:src prev_pid=611 ==> next_comm=swa')).toEqual({
      kind: 'skip',
      why: 'other-event',
      event: 'sched_switch',
    });
    expect(cut('      queue0:src-611   [000] d...  1302.498803: sched_sw')).toEqual({ kind: 'skip', why: 'other-event', event: 'sched_sw' });
    expect(cut('          <idle>-0     [000] d...  1302.498803: mutex_lock <-dma_map_sg')).toEqual({ kind: 'skip', why: 'other-event', event: 'mutex_lock' });
    expect(cut('[    1.930311] iommu: Default domain type: Transl')).toEqual({ kind: 'skip', why: 'other-text' });
    expect(cut('[    1.930311] nvme nvme0: failed to unmap')).toEqual({ kind: 'skip', why: 'other-text' });
    expect(parseTraceLine('  gst-launch-1.0-606   [000] ....  1303.120310: unm')).toEqual({ kind: 'skip', why: 'other-event', event: 'unm' });
    expect(parseTraceLine('[  613.118002] iommu: unmap th')).toEqual({ kind: 'skip', why: 'other-text' });
  });

  it('parseTraceText marks a last line without a newline as unterminated', () => {
    const text = `  a-1 [000] ..... 1.000000: map: ${MAP_RANGE}\n  a-1 [000] ..... 1.000001: unmap: ${UNMAP_RANGE.slice(0, -3)}`;
    const out = [...parseTraceText(text)];
    expect(out.map((o) => [o.lineNo, o.result.kind])).toEqual([
      [1, 'record'],
      [2, 'error'],
    ]);
  });

  it('refuses binary data and very long lines', () => {
    expect(err('\u0000\u0001\u0002ELF')).toBe('binary data: control character 0x00 at column 1');
    expect(err(`  a-1 [000] ..... 1.000000: map: IOMMU: iova=0x0\u0007`)).toMatch(/^binary data: control character 0x07 at column \d+$/);
    expect(err('abc\rdef')).toBe('binary data: control character 0x0d at column 4');
    const long = `  a-1 [000] ..... 1.000000: map: ${'x'.repeat(MAX_LINE_LENGTH)}`;
    expect(err(long)).toBe(`line is ${long.length} characters long (limit ${MAX_LINE_LENGTH}); not parsed`);
    // Exactly at the limit the line is read.
    const atLimit = `  a-1 [000] ..... 1.000000: map: ${MAP_RANGE}`.padEnd(MAX_LINE_LENGTH, ' ');
    expect(parseTraceLine(atLimit).kind).toBe('record');
    // Garbage of printable bytes is text to skip, or an error, never a throw.
    const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)).toString('latin1');
    expect(['skip', 'error']).toContain(parseTraceLine(bytes).kind);
    expect(['skip', 'error']).toContain(parseTraceLine('\uFFFD\uFFFD\uD800 map: IOMMU:').kind);
  });

  it('stays linear on pathological lines', () => {
    const patterns = [
      ' '.repeat(MAX_LINE_LENGTH - 1) + 'x',
      'a' + '-1 '.repeat((MAX_LINE_LENGTH - 10) / 3),
      'a-' + '1'.repeat(MAX_LINE_LENGTH - 10),
      'a-1' + ' '.repeat(MAX_LINE_LENGTH - 10) + 'x',
      'a-1 (' + ' '.repeat(MAX_LINE_LENGTH - 10),
      'a-1 [0] ' + ' '.repeat(MAX_LINE_LENGTH - 10),
      '[' + ' '.repeat(MAX_LINE_LENGTH - 10),
      'x: iova'.repeat(MAX_LINE_LENGTH / 8),
      '  a-1 [000] ..... 1.000000: map: IOMMU: ' + 'iova=0x1 '.repeat(MAX_LINE_LENGTH / 10),
      '  a-1 [000] ..... 1.000000: map: IOMMU: iova=0x' + 'f'.repeat(MAX_LINE_LENGTH - 100),
      '  a-1 [000] ..... 1.000000: map: IOMMU: iova=0x1 paddr=0x1 size=' + '9'.repeat(MAX_LINE_LENGTH - 100),
      'Nov 23 10:00:00 ' + 'h'.repeat(MAX_LINE_LENGTH - 30),
    ];
    for (const line of patterns) {
      const t0 = performance.now();
      const r = parseTraceLine(line);
      const ms = performance.now() - t0;
      expect(['skip', 'error']).toContain(r.kind);
      expect(ms, line.slice(0, 20)).toBeLessThan(100);
    }
  });
});

describe('examples/', () => {
  it('omap-2011.trace: a 1 MiB map, a 4 KiB unmap that removed 1 MiB, a fault in the lost part', () => {
    const recs = records(example('omap-2011.trace'));
    expect(recs.map((r) => r.event)).toEqual(['attach', 'map', 'map', 'unmap', 'io_page_fault', 'unmap', 'unmap', 'detach']);
    expect(recs.every((r) => r.source === 'ftrace' && r.flags?.length === 4 && r.iovaEnd === undefined)).toBe(true);
    const [, map, , unmap, fault] = recs;
    expect(map).toMatchObject({ task: 'gst-launch-1.0', pid: 606, iova: 0x60000000n, size: 1n << 20n });
    expect(unmap).toMatchObject({ task: 'queue0:src', pid: 611, iova: 0x60042000n, size: 4096n, unmappedSize: 1n << 20n });
    const f = fault?.iova ?? 0n;
    const m = map?.iova ?? 0n;
    const u = unmap?.iova ?? 0n;
    expect(f >= m && f < m + (1n << 20n)).toBe(true);
    expect(f >= u && f < u + 4096n).toBe(false);
  });

  it('vfio-intel.trace: range form, tgid column, 2 MiB over-unmap, fault after it, 8K unmapped as 2 x 4K', () => {
    const text = example('vfio-intel.trace');
    const results = [...parseTraceText(text)].map((r) => r.result);
    expect(results.filter((r) => r.kind === 'error')).toEqual([]);
    expect(results.filter((r) => r.kind === 'skip' && r.why === 'other-event').length).toBe(2);
    const recs = records(text);
    expect(recs.map((r) => r.event)).toEqual(['add_to_group', 'attach', 'map', 'map', 'unmap', 'io_page_fault', 'unmap', 'map', 'unmap', 'unmap']);
    expect(recs.every((r) => r.flags?.length === 7 && 'cpu' in r)).toBe(true);
    for (const r of recs.filter((x) => x.event === 'map' || x.event === 'unmap')) {
      expect(r.iovaEnd).toBe((r.iova ?? 0n) + (r.size ?? 0n));
    }
    expect(recs.filter((r) => r.event === 'unmap' && (r.unmappedSize ?? 0n) > (r.size ?? 0n))).toMatchObject([
      { task: 'CPU 0/KVM', pid: 4125, tgid: 4098, iova: 0x201000n, size: 4096n, unmappedSize: 2097152n },
    ]);
    const fault = recs.find((r) => r.event === 'io_page_fault');
    expect(fault).toMatchObject({ task: '<idle>', pid: 0, cpu: 4, flags: 'd.h1...', iova: 0x203040n, faultFlags: 1 });
    expect(fault && 'tgid' in fault).toBe(false);
    expect(recs.find((r) => r.event === 'add_to_group')).toMatchObject({ groupId: 14, device: '0000:03:00.0' });
  });

  it('dmesg-debug.log: debug lines with count, tp_printk map lines, other text skipped', () => {
    const text = example('dmesg-debug.log');
    const results = [...parseTraceText(text)].map((r) => r.result);
    expect(results.filter((r) => r.kind === 'error')).toEqual([]);
    const recs = records(text);
    expect(recs.map((r) => r.event)).toEqual([
      'debug_map',
      'debug_mapping',
      'map',
      'debug_map',
      'debug_mapping',
      'debug_mapping',
      'map',
      'debug_unmap',
      'debug_unmapped',
      'debug_unmapped',
      'debug_unmap',
      'debug_unmapped',
    ]);
    expect(recs.filter((r) => r.source === 'dmesg-tp').length).toBe(2);
    expect(recs.every((r) => r.timestampNs !== undefined)).toBe(true);
    // Each debug map is covered by its mapping chunks.
    let i = 0;
    while (i < recs.length) {
      const r = recs[i++];
      if (r?.event !== 'debug_map') continue;
      let covered = 0n;
      while (recs[i]?.event === 'debug_mapping') {
        const c = recs[i++];
        covered += (c?.pgsize ?? 0n) * (c?.count ?? 1n);
      }
      expect(covered).toBe(r.size);
    }
  });

  it('scenario.jsonl: every line is a command with valid addresses and sizes', () => {
    const lines = example('scenario.jsonl')
      .split('\n')
      .filter((l) => l.trim() !== '');
    const ops = new Set<string>();
    for (const line of lines) {
      const cmd = JSON.parse(line) as Record<string, unknown>;
      expect(typeof cmd.domain).toBe('string');
      ops.add(String(cmd.op));
      if (typeof cmd.iova === 'string') parseAddress(cmd.iova, 'iova');
      if (typeof cmd.paddr === 'string') parseAddress(cmd.paddr, 'paddr');
      if (typeof cmd.size === 'string') expect(parseSize(cmd.size, 'size') > 0n).toBe(true);
      if (Array.isArray(cmd.pgsizes)) for (const s of cmd.pgsizes) parseSize(String(s), 'pgsizes');
      if (cmd.time !== undefined) expect(Number.isNaN(Date.parse(String(cmd.time)))).toBe(false);
      expect(['domain', 'map', 'unmap', 'fault', 'attach', 'detach', 'destroy']).toContain(cmd.op);
    }
    expect([...ops].sort()).toEqual(['attach', 'destroy', 'detach', 'domain', 'fault', 'map', 'unmap']);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

/** Characters a task name may hold in these generated lines (no '[': the CPU column opens with it). */
const TASK_CHAR = fc.constantFrom(...'abcXYZ019 -_/:.<>()#é'.split(''));
const taskArb = fc.tuple(fc.constantFrom(...'abkqW<'.split('')), fc.string({ unit: TASK_CHAR, maxLength: 14 })).map(([a, b]) => a + b);
const FLAG_CHAR = fc.constantFrom(...'.dDNnhHsz0123456789bpX'.split(''));
const flagsArb = fc.option(
  fc.constantFrom(4, 5, 7).chain((n) => fc.string({ unit: FLAG_CHAR, minLength: n, maxLength: n })),
  { nil: undefined },
);
const u64 = fc.bigInt({ min: 0n, max: U64_MAX });
const sizeArb = fc.oneof(u64, fc.constantFrom(4096n, 8192n, 65536n, 1n << 20n, 2n << 20n, 1n << 30n));
const devNameArb = fc.string({ unit: fc.constantFrom(...'0123456789abcdef:.-_mu'.split('')), minLength: 1, maxLength: 16 });

interface Generated {
  body: string;
  name: string;
  expected: Partial<TraceRecord>;
}

const bodyArb: fc.Arbitrary<Generated> = fc.oneof(
  fc
    .record({ iova: u64, paddr: u64, size: sizeArb, range: fc.boolean(), dev: fc.option(devNameArb, { nil: undefined }) })
    .map(({ iova, paddr, size, range, dev }) => {
      const end = (iova + size) & U64_MAX;
      const body = `IOMMU: ${dev !== undefined ? `dev=${dev} ` : ''}iova=${h16(iova)}${range ? ` - ${h16(end)}` : ''} paddr=${h16(paddr)} size=${size}`;
      const expected: Partial<TraceRecord> = { event: 'map', iova, paddr, size };
      if (range) expected.iovaEnd = end;
      if (dev !== undefined) expected.dev = dev;
      return { body, name: 'map', expected };
    }),
  fc.record({ iova: u64, size: sizeArb, unmapped: sizeArb, range: fc.boolean() }).map(({ iova, size, unmapped, range }) => {
    const end = (iova + size) & U64_MAX;
    const body = `IOMMU: iova=${h16(iova)}${range ? ` - ${h16(end)}` : ''} size=${size} unmapped_size=${unmapped}`;
    const expected: Partial<TraceRecord> = { event: 'unmap', iova, size, unmappedSize: unmapped };
    if (range) expected.iovaEnd = end;
    return { body, name: 'unmap', expected };
  }),
  fc
    .record({
      driver: fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_'.split('')), maxLength: 12 }),
      device: devNameArb,
      iova: u64,
      flags: fc.integer({ min: 0, max: 0xffff }),
    })
    .map(({ driver, device, iova, flags }) => ({
      body: `IOMMU:${driver} ${device} iova=${h16(iova)} flags=0x${flags.toString(16).padStart(4, '0')}`,
      name: 'io_page_fault',
      expected: { event: 'io_page_fault' as const, driver, device, iova, faultFlags: flags },
    })),
  fc.record({ attach: fc.boolean(), device: devNameArb }).map(({ attach, device }) => ({
    body: `IOMMU: device=${device}`,
    name: attach ? 'attach_device_to_domain' : 'detach_device_from_domain',
    expected: { event: attach ? ('attach' as const) : ('detach' as const), device },
  })),
  fc.record({ add: fc.boolean(), group: fc.integer({ min: 0, max: 0x7fffffff }), device: devNameArb }).map(({ add, group, device }) => ({
    body: `IOMMU: groupID=${group} device=${device}`,
    name: add ? 'add_device_to_group' : 'remove_device_from_group',
    expected: { event: add ? ('add_to_group' as const) : ('remove_from_group' as const), groupId: group, device },
  })),
);

const ftraceLineArb = fc
  .record({
    task: taskArb,
    pid: fc.integer({ min: 0, max: 4194304 }),
    tgid: fc.option(fc.option(fc.integer({ min: 0, max: 4194304 }), { nil: null }), { nil: undefined }),
    cpu: fc.integer({ min: 0, max: 4095 }),
    flags: flagsArb,
    sec: fc.integer({ min: 0, max: 9_999_999 }),
    usec: fc.integer({ min: 0, max: 999_999 }),
    traceCmd: fc.boolean(),
    body: bodyArb,
  })
  .map(({ task, pid, tgid, cpu, flags, sec, usec, traceCmd, body }) => {
    const ts = `${sec}.${String(usec).padStart(6, '0')}`;
    let line: string;
    if (traceCmd) {
      // trace-cmd report: `%16s-%-5d [%03d] %6.1000d: EVENT:<padding>BODY`
      const padding = ' '.repeat(Math.max(2, 22 - body.name.length));
      line = `${pad(task, 16)}-${padR(pid, 5)} [${String(cpu).padStart(3, '0')}] ${pad(ts, 12)}: ${body.name}:${padding}${body.body}`;
    } else {
      const tgidCol = tgid === undefined ? '' : `(${tgid === null ? '-------' : pad(tgid, 7)}) `;
      const flagsCol = flags === undefined ? '' : `${flags} `;
      line = `${pad(task, 16)}-${padR(pid, tgid === undefined ? 5 : 7)} ${tgidCol}[${String(cpu).padStart(3, '0')}] ${flagsCol}${pad(ts, 12)}: ${body.name}: ${body.body}`;
    }
    const expected: TraceRecord = {
      event: 'map',
      ...body.expected,
      source: traceCmd ? 'trace-cmd' : 'ftrace',
      task,
      pid,
      cpu,
      timestamp: ts,
      timestampNs: BigInt(sec) * 1_000_000_000n + BigInt(usec) * 1000n,
    };
    if (!traceCmd && tgid !== undefined && tgid !== null) expected.tgid = tgid;
    if (!traceCmd && flags !== undefined) expected.flags = flags;
    return { line, expected };
  });

const hex = (v: bigint): string => `0x${v.toString(16)}`;
const dmesgLineArb = fc
  .record({
    kind: fc.constantFrom('map', 'mapping', 'mapping-v32', 'mapping-count', 'unmap', 'unmapped', 'unmapped-v32'),
    iova: u64,
    pa: u64,
    size: u64,
    count: u64,
    prefix: fc.constantFrom('', 'iommu: ', 'omap-iommu 480bd400.mmu: '),
    stamp: fc.option(fc.tuple(fc.integer({ min: 0, max: 99999 }), fc.integer({ min: 0, max: 999999 })), { nil: undefined }),
  })
  .map(({ kind, iova, pa, size, count, prefix, stamp }) => {
    let msg: string;
    let expected: TraceRecord;
    switch (kind) {
      case 'map':
        msg = `map: iova ${hex(iova)} pa ${h16(pa)} size ${hex(size)}`;
        expected = { event: 'debug_map', source: 'dmesg', iova, paddr: pa, size };
        break;
      case 'mapping':
        msg = `mapping: iova ${hex(iova)} pa ${h16(pa)} pgsize ${hex(size)}`;
        expected = { event: 'debug_mapping', source: 'dmesg', iova, paddr: pa, pgsize: size };
        break;
      case 'mapping-v32':
        msg = `mapping: iova ${hex(iova)} pa ${hex(pa)} pgsize ${size}`;
        expected = { event: 'debug_mapping', source: 'dmesg', iova, paddr: pa, pgsize: size };
        break;
      case 'mapping-count':
        msg = `mapping: iova ${hex(iova)} pa ${h16(pa)} pgsize ${hex(size)} count ${count}`;
        expected = { event: 'debug_mapping', source: 'dmesg', iova, paddr: pa, pgsize: size, count };
        break;
      case 'unmap':
        msg = `unmap this: iova ${hex(iova)} size ${hex(size)}`;
        expected = { event: 'debug_unmap', source: 'dmesg', iova, size };
        break;
      case 'unmapped':
        msg = `unmapped: iova ${hex(iova)} size ${hex(size)}`;
        expected = { event: 'debug_unmapped', source: 'dmesg', iova, unmappedSize: size };
        break;
      default:
        msg = `unmapped: iova ${hex(iova)} size ${size.toString(16)}`;
        expected = { event: 'debug_unmapped', source: 'dmesg', iova, unmappedSize: size };
        break;
    }
    if (prefix !== '') expected.prefix = prefix.slice(0, -2);
    let line = `${prefix}${msg}`;
    if (stamp) {
      const ts = `${stamp[0]}.${String(stamp[1]).padStart(6, '0')}`;
      line = `[${pad(ts, 12)}] ${line}`;
      expected.timestamp = ts;
      expected.timestampNs = BigInt(stamp[0]) * 1_000_000_000n + BigInt(stamp[1]) * 1000n;
    }
    return { line, expected };
  });

describe('properties', () => {
  it('parseTraceLine never throws, whatever the input', () => {
    const check = (s: string): void => {
      const r: ParsedLine = parseTraceLine(s);
      expect(['skip', 'error', 'record']).toContain(r.kind);
      if (r.kind === 'error') expect(r.reason.length).toBeLessThan(400);
    };
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), check), { numRuns: 2000 });
    fc.assert(fc.property(fc.string({ unit: fc.constantFrom(...' -[]():.=x0123456789abcdefIOMU#<>\r\n\t'.split('')), maxLength: 200 }), check), {
      numRuns: 2000,
    });
    // Mutations of well-formed lines: cut, spliced, characters replaced.
    fc.assert(
      fc.property(fc.oneof(ftraceLineArb, dmesgLineArb), fc.nat(), fc.nat(), fc.string({ unit: 'binary', maxLength: 8 }), ({ line }, a, b, insert) => {
        const i = a % (line.length + 1);
        const j = i + (b % (line.length + 1 - i));
        check(line.slice(0, i));
        check(line.slice(0, i) + insert + line.slice(j));
        check(line.slice(0, i) + line.slice(j));
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips generated ftrace and trace-cmd lines', () => {
    fc.assert(
      fc.property(ftraceLineArb, ({ line, expected }) => {
        expect(parseTraceLine(line)).toEqual({ kind: 'record', record: expected });
        expect(parseTraceLine(`${line}\r\n`)).toEqual({ kind: 'record', record: expected });
      }),
      { numRuns: 3000 },
    );
  });

  it('round-trips generated kernel-log debug lines', () => {
    fc.assert(
      fc.property(dmesgLineArb, ({ line, expected }) => {
        expect(parseTraceLine(line)).toEqual({ kind: 'record', record: expected });
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips generated tp_printk lines', () => {
    fc.assert(
      fc.property(bodyArb, fc.integer({ min: 0, max: 99999 }), (body, sec) => {
        const r = parseTraceLine(`[${pad(`${sec}.000001`, 12)}] ${body.name}: ${body.body}`);
        expect(r).toEqual({
          kind: 'record',
          record: { ...body.expected, source: 'dmesg-tp', timestamp: `${sec}.000001`, timestampNs: BigInt(sec) * 1_000_000_000n + 1000n },
        });
      }),
      { numRuns: 1000 },
    );
  });
});
