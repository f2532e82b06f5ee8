/**
 * The reader stage (src/import/read.ts): lines from bytes with exact offsets, decompression,
 * trace-cmd binary files, streams (FIFO, standard input), identity, errors. Real files in a
 * temporary folder, real pipes and child processes; no mocks.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { findCommand } from '../../src/import/decompress.js';
import { parseTraceLine } from '../../src/import/parse.js';
import { contentDigest, HEAD_BYTES, MAX_LINE_BYTES, openSource, readLines, ReadError, splitLines, type Line } from '../../src/import/read.js';

const ROOT = join(__dirname, '..', '..');
const DIR = mkdtempSync(join(tmpdir(), 'iommu-ledger-read-'));
afterAll(() => rmSync(DIR, { recursive: true, force: true }));
let seq = 0;
/** A new file in the test folder with these bytes. */
function file(bytes: Uint8Array | string, name = `f${++seq}.trace`): string {
  const p = join(DIR, name);
  writeFileSync(p, bytes);
  return p;
}
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function all(it: AsyncIterable<Line>): Promise<Line[]> {
  const out: Line[] = [];
  for await (const l of it) out.push(l);
  return out;
}
async function linesOf(path: string, opts: Parameters<typeof openSource>[1] = {}): Promise<Line[]> {
  const src = await openSource(path, opts);
  return all(src.lines());
}

/** A plainly written (slow) model of the reader: lines of a whole buffer, each decoded alone with TextDecoder. */
function reference(bytes: Uint8Array, maxLine = MAX_LINE_BYTES, start = 0, startLine = 0): Line[] {
  const td = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  const out: Line[] = [];
  let s = start;
  let no = startLine;
  while (s < bytes.length) {
    const nl = bytes.indexOf(10, s);
    const unterminated = nl < 0;
    const e = unterminated ? bytes.length : nl;
    let from = s;
    if (s === 0 && e >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) from = 3;
    let n = e;
    if (n > from && bytes[n - 1] === 13) n--;
    const line: Line = { no: ++no, text: '', start: s, end: unterminated ? bytes.length : nl + 1, unterminated };
    if (n - from <= maxLine) line.text = td.decode(bytes.subarray(from, n));
    else {
      let cut = from + maxLine;
      for (let k = 0; k < 3 && cut > from && (bytes[cut]! & 0xc0) === 0x80; k++) cut--;
      line.text = td.decode(bytes.subarray(from, cut));
      line.overlong = true;
    }
    out.push(line);
    s = line.end;
  }
  return out;
}

async function* chunked(bytes: Uint8Array, cuts: number[]): AsyncGenerator<Buffer> {
  let p = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    const q = Math.min(c, bytes.length);
    yield Buffer.from(bytes.subarray(p, Math.max(p, q)));
    p = Math.max(p, q);
  }
  yield Buffer.from(bytes.subarray(p));
}

const TRACE = [
  '# tracer: nop',
  '  gst-launch-1.0-606   [000] ....  1302.445180: map: IOMMU: iova=0x0000000060000000 paddr=0x0000000087400000 size=1048576',
  '  gst-launch-1.0-606   [000] ....  1302.445190: unmap: IOMMU: iova=0x0000000060000000 size=4096 unmapped_size=1048576',
  '     fio-3310  [001]  2048.000117: map:                  IOMMU: iova=0x00000000ffff0000 - 0x00000000ffff1000 paddr=0x000000011b2c4000 size=4096',
];
/** A realistic trace of n lines (~130 bytes each). */
function traceText(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += `${TRACE[1 + (i % 3)]!.replace('1302.445180', (1302 + i / 1e6).toFixed(6))}\n`;
  return s;
}

describe('lines from bytes', () => {
  it('invalid UTF-8 (a line of 0xff bytes, a 0xff inside a task name) keeps every later line number and byte offset exact', async () => {
    const bytes = Buffer.concat([
      Buffer.from(`${TRACE[0]}\n`),
      Buffer.alloc(300, 0xff),
      Buffer.from('\n  gst-launch'),
      Buffer.from([0xff]),
      Buffer.from(`-606   [000] ....  1302.445180: map: IOMMU: iova=0x1000 paddr=0x2000 size=4096\n`),
      Buffer.from(traceText(2000)),
    ]);
    const lines = await linesOf(file(bytes));
    // Every line's offsets are where its bytes are, and the numbers count 0x0A bytes.
    const nls: number[] = [];
    for (let i = bytes.indexOf(10); i >= 0; i = bytes.indexOf(10, i + 1)) nls.push(i);
    expect(lines).toHaveLength(nls.length);
    lines.forEach((l, k) => {
      expect(l.no).toBe(k + 1);
      expect(l.end).toBe(nls[k]! + 1);
      expect(l.start).toBe(k === 0 ? 0 : nls[k - 1]! + 1);
      expect(l.unterminated).toBe(false);
    });
    expect(lines[1]!.text).toBe('\ufffd'.repeat(300));
    expect(lines[2]!.text.startsWith('  gst-launch\ufffd-606   [000]')).toBe(true);
    // The lines after them are the trace, byte for byte.
    expect(
      lines
        .slice(3)
        .map((l) => l.text)
        .join('\n'),
    ).toBe(traceText(2000).slice(0, -1));
    expect(lines.at(-1)!.end).toBe(bytes.length);
    // The line after the bad bytes parses as it would anywhere.
    expect(parseTraceLine(lines[3]!.text).kind).toBe('record');
  });

  it('matches the plain model for any bytes, any chunking, any line limit (property)', async () => {
    // Bytes that make newlines, CRs, BOMs, valid, cut and invalid UTF-8 likely, and any other byte.
    const byte = fc.oneof(
      fc.constantFrom(0x0a, 0x0d, 0xef, 0xbb, 0xbf, 0xff, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x80, 0xed, 0xa0, 0xc0),
      fc.integer({ min: 0x20, max: 0x7e }),
      fc.integer({ min: 0, max: 255 }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(byte, { maxLength: 400, size: 'max' }),
        fc.array(fc.nat(450), { maxLength: 12 }),
        fc.integer({ min: 0, max: 40 }),
        fc.boolean(),
        async (picked, cuts, maxLine, bom) => {
          const body = Buffer.concat([bom ? Buffer.from([0xef, 0xbb, 0xbf]) : Buffer.alloc(0), Buffer.from(picked)]);
          const want = reference(body, maxLine);
          expect(await all(splitLines(chunked(body, cuts), { maxLine }))).toEqual(want);
          // A resume after any line, seeking (base = start) or skipping (base 0), gives the rest.
          for (const k of [0, 1, Math.floor(want.length / 2), want.length - 1]) {
            if (k <= 0 || k >= want.length) continue;
            const start = want[k - 1]!.end;
            expect(await all(splitLines(chunked(body.subarray(start), cuts), { base: start, start, startLine: k, maxLine }))).toEqual(want.slice(k));
            expect(await all(splitLines(chunked(body, cuts), { start, startLine: k, maxLine }))).toEqual(want.slice(k));
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('a BOM at the start of the stream is dropped from line 1 (its 3 bytes still counted); not elsewhere, not on a resume', async () => {
    const p = file(`\ufeff${TRACE[1]}\n\ufeffsecond\nthird`);
    const lines = await linesOf(p);
    expect(lines.map((l) => l.text)).toEqual([TRACE[1], '\ufeffsecond', 'third']);
    expect(lines[0]!.end).toBe(3 + Buffer.byteLength(TRACE[1]!) + 1);
    expect(lines[2]).toMatchObject({ no: 3, unterminated: true, end: readFileSync(p).length });
    expect(parseTraceLine(lines[0]!.text).kind).toBe('record');
    const src = await openSource(p);
    expect(await all(src.lines({ start: lines[0]!.end, startLine: 1 }))).toEqual(lines.slice(1));
  });

  it('CRLF: one CR before the newline is dropped; a lone CR stays', async () => {
    const p = file(`a\r\nb\r\r\nc\rd\n\r\ne\r`);
    const lines = await linesOf(p);
    expect(lines.map((l) => l.text)).toEqual(['a', 'b\r', 'c\rd', '', 'e']);
    expect(lines.map((l) => l.end)).toEqual([3, 7, 11, 13, 15]);
    expect(lines.at(-1)!.unterminated).toBe(true);
  });

  it('a line over 1 MiB around a chunk boundary is one line, cut to 1 MiB and flagged; the lines after it are exact', async () => {
    const CH = 64 * 1024;
    const before = 'x'.repeat(CH - 10); // the long line starts 9 bytes before the first chunk boundary
    const long = `${'é'.repeat(MAX_LINE_BYTES)}tail`; // 2 MiB + 4 bytes, a 2-byte character at every cut
    const exact = 'y'.repeat(MAX_LINE_BYTES); // exactly 1 MiB: whole
    const plusOne = 'z'.repeat(MAX_LINE_BYTES + 1);
    const text = `${before}\n${long}\n${exact}\r\n${plusOne}\n${TRACE[1]}\n`;
    const lines = await linesOf(file(text));
    expect(lines).toHaveLength(5);
    expect(lines[1]!.overlong).toBe(true);
    expect(lines[1]!.start).toBe(CH - 9);
    expect(Buffer.byteLength(lines[1]!.text)).toBe(MAX_LINE_BYTES); // 'é' is 2 bytes: 1 MiB holds whole ones
    expect(lines[1]!.text).toBe('é'.repeat(MAX_LINE_BYTES / 2));
    expect(lines[1]!.end).toBe(CH - 9 + Buffer.byteLength(long) + 1);
    expect(lines[2]).toMatchObject({ no: 3, text: exact });
    expect(lines[2]!.overlong).toBeUndefined();
    expect(lines[3]!.overlong).toBe(true);
    expect(lines[3]!.text.length).toBe(MAX_LINE_BYTES);
    expect(lines[4]).toMatchObject({ no: 5, text: TRACE[1], end: Buffer.byteLength(text), unterminated: false });
    // An odd cut: 1 MiB falls inside a 3-byte character ((2^20 - 2) % 3 = 2), which is left out rather than broken.
    const odd = await linesOf(file(`ab${'€'.repeat(MAX_LINE_BYTES / 2)}`));
    expect(odd[0]!.overlong).toBe(true);
    expect(odd[0]!.unterminated).toBe(true);
    expect(odd[0]!.text).not.toContain('\ufffd');
    expect(Buffer.byteLength(odd[0]!.text)).toBe(2 + 3 * Math.floor((MAX_LINE_BYTES - 2) / 3));
  });

  it('a long line with no newline at all does not grow memory with its length', async () => {
    // 256 MiB of one line in new 1 MiB chunks, made on the fly: the reader keeps 1 MiB of it,
    // and the rest is garbage (measured: ~40 MiB more RSS; keeping the chunks: ~240 MiB).
    async function* huge(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 256; i++) yield Buffer.alloc(1 << 20, 0x41);
      yield Buffer.from('\nafter\n');
    }
    const before = process.memoryUsage().rss;
    const lines = await all(splitLines(huge()));
    expect(lines).toHaveLength(2);
    expect(lines[0]!.text.length).toBe(MAX_LINE_BYTES);
    expect(lines[0]!.end).toBe(256 * (1 << 20) + 1);
    expect(lines[1]).toMatchObject({ no: 2, text: 'after' });
    // Keeping the line would take 256 MiB (and its text twice that).
    expect(process.memoryUsage().rss - before).toBeLessThan(128 << 20);
  });

  it('a resume from any line end gives the same lines as a full read (plain file: seek; gzip: skip)', async () => {
    const text = `${traceText(5000)}last line without newline`;
    const plain = file(text);
    const gz = file(gzipSync(text), 'resume.trace.gz');
    const full = await linesOf(plain);
    expect(full).toHaveLength(5001);
    expect(await linesOf(gz)).toEqual(full);
    for (const k of [1, 17, 2500, 4999, 5000]) {
      for (const p of [plain, gz]) {
        const src = await openSource(p);
        expect(await all(src.lines({ start: full[k - 1]!.end, startLine: k }))).toEqual(full.slice(k));
      }
    }
    // readLines() takes the same options.
    expect(await all(readLines(plain, { start: full[4999]!.end, startLine: 5000 }))).toEqual([full[5000]]);
  });
});

describe('compressed files', () => {
  const text = `${TRACE.join('\n')}\n${traceText(30000)}`; // ~3.9 MB: several chunks and zstd blocks
  const plain = file(text, 'c.trace');
  const want = reference(Buffer.from(text));
  const zstd = findCommand('zstd');
  const xz = findCommand('xz');

  it('gzip (node:zlib), told by its magic bytes whatever the name: the same lines, digest and head key as the plain file', async () => {
    const gz = file(gzipSync(text), 'no-extension');
    const src = await openSource(gz);
    expect(src.info).toMatchObject({ kind: 'file', seekable: true, compressed: 'gzip', decoder: 'node:zlib' });
    expect(await all(src.lines())).toEqual(want);
    expect(await src.digest()).toBe(sha256(Buffer.from(text)));
    expect(await src.headKey()).toBe(`head-${sha256(Buffer.from(text).subarray(0, HEAD_BYTES))}`);
    expect(await contentDigest(gz)).toBe(await contentDigest(plain));
    // Two gzip members one after the other (cat a.gz b.gz) are one content.
    const two = file(Buffer.concat([gzipSync(text.slice(0, 1000)), gzipSync(text.slice(1000))]));
    expect(await linesOf(two)).toEqual(want);
  });

  it.skipIf(!zstd)('zstd (fzstd): the same lines as the plain file, also made with --long and as two frames (zstd not on PATH: skipped)', async () => {
    for (const args of [
      ['-q', '-19'],
      ['-q', '--long=27', '-3'],
    ]) {
      const out = join(DIR, `c${++seq}.zst`);
      expect(spawnSync(zstd!, [...args, plain, '-o', out]).status).toBe(0);
      const src = await openSource(out);
      expect(src.info).toMatchObject({ compressed: 'zstd', decoder: 'fzstd' });
      expect(await all(src.lines())).toEqual(want);
      expect(await src.digest()).toBe(sha256(Buffer.from(text)));
    }
    const a = spawnSync(zstd!, ['-q', '-c'], { input: text.slice(0, 5000) }).stdout;
    const b = spawnSync(zstd!, ['-q', '-c'], { input: text.slice(5000) }).stdout;
    expect(await linesOf(file(Buffer.concat([a, b])))).toEqual(want);
  });

  it.skipIf(!xz)(
    'xz (xz-decompress): the same lines; a SHA-256 check goes to the system xz, or names the command when there is none (xz not on PATH: skipped)',
    async () => {
      const x = spawnSync(xz!, ['-c', '-6'], { input: text }).stdout;
      const src = await openSource(file(x, 'c.trace.xz'));
      expect(src.info).toMatchObject({ compressed: 'xz', decoder: 'xz-decompress' });
      expect(await all(src.lines())).toEqual(want);
      const sha = file(spawnSync(xz!, ['-c', '--check=sha256'], { input: text }).stdout, 'sha.trace.xz');
      const viaTool = await openSource(sha);
      expect(viaTool.info.decoder).toBe('xz -dc');
      expect(await all(viaTool.lines())).toEqual(want);
      const err = await openSource(sha, { path: join(DIR, 'empty-path') }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReadError);
      expect((err as ReadError).message).toBe(
        `cannot read ${sha}: its xz integrity check (SHA-256, or another than CRC32/CRC64) needs the xz tool, which is not on PATH: decompress it with 'xz -dc ${sha} > ${sha.replace(/\.xz$/, '')}.txt' (Debian package xz-utils) and import that`,
      );
    },
  );

  it.skipIf(!xz)('xz: a read left early releases the decoder, so later reads of xz files go on (xz not on PATH: skipped)', async () => {
    const p = file(spawnSync(xz!, ['-c'], { input: text }).stdout);
    const src = await openSource(p);
    for (let round = 0; round < 3; round++) {
      for await (const l of src.lines()) {
        expect(l.no).toBe(1);
        break;
      }
    }
    expect(await src.head()).toEqual(Buffer.from(text).subarray(0, HEAD_BYTES));
    const done = await Promise.race([all(src.lines()), new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 20_000))]);
    expect(done).toEqual(want);
  });

  it.skipIf(!xz)(
    'xz: a second xz stream while one is open goes to the system xz, or fails at once without it (never waits) (xz not on PATH: skipped)',
    async () => {
      const p = file(spawnSync(xz!, ['-c'], { input: text }).stdout);
      const held = (await openSource(p)).lines()[Symbol.asyncIterator]();
      expect((await held.next()).value).toEqual(want[0]);
      const stuck = new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 20_000));
      // The digest while the lines are read.
      expect(await Promise.race([contentDigest(p), stuck])).toBe(sha256(Buffer.from(text)));
      const without = await Promise.race([contentDigest(p, { path: join(DIR, 'no-such-dir') }).catch((e: unknown) => e), stuck]);
      expect((without as Error).message).toBe(
        `cannot read ${p}: xz: another xz stream is being read in this process, and xz-decompress reads one at a time (finish or close the other first, or install xz-utils) (to decompress it by hand: xz -dc ${p} > ${p}.txt)`,
      );
      await held.return!(undefined);
      expect(await Promise.race([contentDigest(p, { path: join(DIR, 'no-such-dir') }), stuck])).toBe(sha256(Buffer.from(text)));
    },
  );

  it('a compressed file cut short or damaged is a ReadError that says how to decompress by hand', async () => {
    const gz = gzipSync(text);
    const cut = file(gz.subarray(0, gz.length >> 1), 'cut.trace.gz');
    const err = await linesOf(cut).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReadError);
    expect((err as ReadError).exitCode).toBe(2);
    expect((err as Error).message).toBe(
      `cannot read ${cut}: gzip: unexpected end of input (the file is cut short) (to decompress it by hand: gzip -dc ${cut} > ${cut.slice(0, -3)}.txt)`,
    );
    if (zstd) {
      const z = spawnSync(zstd, ['-q', '-c'], { input: text }).stdout;
      const zcut = file(z.subarray(0, z.length >> 1), 'cut.trace.zst');
      await expect(linesOf(zcut)).rejects.toThrow(
        `cannot read ${zcut}: zstd: unexpected end of input (the file is cut short) (to decompress it by hand: zstd -dc ${zcut} > ${zcut.slice(0, -4)}.txt)`,
      );
    }
    if (xz) {
      const x = spawnSync(xz, ['-c'], { input: text }).stdout;
      const bad = Buffer.from(x);
      const mid = bad.length >> 1;
      bad[mid] = bad[mid]! ^ 0xff;
      await expect(linesOf(file(bad, 'bad.trace.xz'))).rejects.toThrow(
        /^cannot read .*bad\.trace\.xz: xz: data is corrupt \(to decompress it by hand: xz -dc /,
      );
    }
    // bzip2 and lz4 are told by their magic bytes and refused with the command to use.
    const bz = file(Buffer.concat([Buffer.from('BZh91AY&SY'), Buffer.alloc(40, 7)]), 'x.trace.bz2');
    await expect(openSource(bz)).rejects.toThrow(
      `cannot read ${bz}: it is bzip2-compressed, which is not read directly: decompress it with 'bzip2 -dc ${bz} > ${bz.slice(0, -4)}.txt' and import that`,
    );
  });
});

/** A real trace.dat (trace-cmd file format v6, one CPU, iommu:map events), as `trace-cmd record` writes one. */
function traceDat(maps: Array<{ iova: bigint; paddr: bigint; size: bigint }>, uname?: string): Buffer {
  const PAGE = 4096;
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const u64 = (v: number | bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    return b;
  };
  const cstr = (s: string) => Buffer.from(`${s}\0`);
  const sized8 = (s: string) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
  const sized4 = (s: string) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
  const headerPage =
    '\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n' +
    '\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n';
  const headerEvent =
    '# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n\tarray       :   32 bits\n\n' +
    '\tpadding     : type == 29\n\ttime_extend : type == 30\n\ttime_stamp : type == 31\n\tdata max type_len  == 28\n';
  const mapFormat =
    'name: map\nID: 100\nformat:\n' +
    '\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n' +
    '\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n' +
    '\tfield:u64 iova;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:u64 paddr;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:size_t size;\toffset:24;\tsize:8;\tsigned:0;\n\n' +
    'print fmt: "IOMMU: iova=0x%016llx - 0x%016llx paddr=0x%016llx size=%zu", REC->iova, REC->iova + REC->size, REC->paddr, REC->size\n';
  const head = Buffer.concat([
    Buffer.from([0x17, 0x08, 0x44]),
    Buffer.from('tracing'),
    cstr('6'),
    Buffer.from([0, 8]), // little endian, 8-byte long
    u32(PAGE),
    cstr('header_page'),
    sized8(headerPage),
    cstr('header_event'),
    sized8(headerEvent),
    u32(0), // ftrace event formats
    u32(1), // event systems
    cstr('iommu'),
    u32(1),
    sized8(mapFormat),
    sized4(''), // kallsyms
    sized4(''), // printk formats
    sized8('606 gst-launch-1.0\n'), // saved cmdlines
    u32(1), // CPUs
    Buffer.from('options  \0'),
    // The recorder's uname (option 5, TRACECMD_OPTION_UNAME), when given; then the end of options.
    ...(uname !== undefined ? [Buffer.from([5, 0]), u32(Buffer.byteLength(uname) + 1), cstr(uname)] : []),
    Buffer.from([0, 0]),
    Buffer.from('flyrecord\0'),
  ]);
  // One ring-buffer page: timestamp, commit (bytes of data), then events of 4-byte header + 32 bytes.
  const events = maps.map((m, i) => {
    const ev = Buffer.alloc(36);
    ev.writeUInt32LE(8 | ((i === 0 ? 0 : 10_000) << 5)); // type_len 8 (32 bytes), time delta in ns
    ev.writeUInt16LE(100, 4); // common_type: the map event's ID
    ev.writeInt32LE(606, 8); // common_pid
    ev.writeBigUInt64LE(m.iova, 12);
    ev.writeBigUInt64LE(m.paddr, 20);
    ev.writeBigUInt64LE(m.size, 28);
    return ev;
  });
  const data = Buffer.concat(events);
  const page = Buffer.alloc(PAGE);
  page.writeBigUInt64LE(1_302_445_180_000n, 0);
  page.writeBigUInt64LE(BigInt(data.length), 8);
  data.copy(page, 16);
  const dataAt = Math.ceil((head.length + 16) / PAGE) * PAGE;
  const table = Buffer.concat([head, u64(dataAt), u64(PAGE)]);
  return Buffer.concat([table, Buffer.alloc(dataAt - table.length), page]);
}

describe('trace-cmd binary files (trace.dat)', () => {
  const traceCmd = findCommand('trace-cmd');

  it('is refused when trace-cmd is not on PATH, with the command that converts it', async () => {
    const p = file(Buffer.concat([Buffer.from([0x17, 0x08, 0x44]), Buffer.from('tracing6\0'), Buffer.alloc(100)]), 'trace.dat');
    const err = await openSource(p, { path: join(DIR, 'no-such-dir') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReadError);
    expect((err as ReadError).exitCode).toBe(2);
    expect((err as Error).message).toBe(
      `cannot read ${p}: it is a trace-cmd binary file (trace.dat), and trace-cmd is not on PATH to read it: convert it to text with 'trace-cmd report -i ${p} > ${p}.txt' (Debian package trace-cmd: apt-get install trace-cmd), then import the .txt file`,
    );
    // The same bytes gzip-compressed, or on a stream, are refused too (trace-cmd reads a file of its own).
    const gz = file(gzipSync(readFileSync(p)), 'trace.dat.gz');
    await expect(linesOf(gz)).rejects.toThrow(
      `cannot read ${gz}: it is a gzip-compressed trace-cmd binary file (trace.dat): decompress it (gzip -dc ${gz} > ${gz.slice(0, -3)}.txt), then convert it`,
    );
  });

  it.skipIf(!traceCmd)('is read through `trace-cmd report` when trace-cmd is on PATH (not on PATH: skipped; Debian package trace-cmd)', async () => {
    const maps = [
      { iova: 0x60000000n, paddr: 0x87400000n, size: 0x100000n },
      { iova: 0x60100000n, paddr: 0x87500000n, size: 0x1000n },
    ];
    const p = file(traceDat(maps, 'Linux rig 6.13.2-arch1-1 x86_64'), 'real.dat');
    const src = await openSource(p, { path: process.env.PATH });
    // The release the recorder saved (trace-cmd report --uname): import picks the profile's behaviour for it.
    expect(src.info).toMatchObject({ kind: 'file', seekable: true, via: 'trace-cmd report', kernel: '6.13.2-arch1-1' });
    expect((await openSource(file(traceDat(maps), 'no-uname.dat'), { path: process.env.PATH })).info.kernel).toBeUndefined();
    const lines = await all(src.lines());
    const records = lines.map((l) => parseTraceLine(l.text)).filter((r) => r.kind === 'record');
    expect(records.map((r) => (r.kind === 'record' ? [r.record.event, r.record.iova, r.record.paddr, r.record.size, r.record.pid] : []))).toEqual(
      maps.map((m) => ['map', m.iova, m.paddr, m.size, 606]),
    );
    // Identity and resume are those of the report's text.
    const report = spawnSync(traceCmd!, ['report', '-i', p]).stdout;
    expect(await src.digest()).toBe(sha256(report));
    expect(await all(src.lines({ start: lines[0]!.end, startLine: 1 }))).toEqual(lines.slice(1));
    // A damaged file: trace-cmd's own failure, as a ReadError; and a file it reads as empty
    // without an error (cut inside its header: trace-cmd 3.1 prints nothing and exits 0).
    const broken = file(traceDat(maps).subarray(0, 5000), 'broken.dat');
    await expect(linesOf(broken)).rejects.toThrow(/^cannot read .*broken\.dat: trace-cmd report failed \(exit code \d+\)/);
    const cut = file(traceDat(maps).subarray(0, 200), 'cut.dat');
    await expect(linesOf(cut)).rejects.toThrow(`cannot read ${cut}: trace-cmd report printed nothing (the file is cut short or damaged)`);
  });
});

describe('streams: FIFO, standard input, character devices', () => {
  /** The next n lines of an iterator, or an error after `ms` (so a reader that waits for EOF fails instead of hanging). */
  async function take(it: AsyncIterator<Line>, n: number, ms = 10_000): Promise<Line[]> {
    const out: Line[] = [];
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`only ${out.length} of ${n} lines within ${ms} ms`)), ms));
    while (out.length < n) {
      const r = await Promise.race([it.next(), timeout]);
      if (r.done) break;
      out.push(r.value);
    }
    return out;
  }

  function fifo(): string {
    const p = join(DIR, `fifo${++seq}`);
    expect(spawnSync('mkfifo', [p]).status).toBe(0);
    return p;
  }

  it('a FIFO is streamed: the lines written so far are yielded before the writer closes', async () => {
    const p = fifo();
    const text = traceText(10);
    const nl = text.split('\n');
    const opening = openSource(p); // blocks (in the thread pool) until a writer opens
    const w = await openFile(p, 'w');
    await w.write(`${nl.slice(0, 5).join('\n')}\n`);
    const src = await opening;
    expect(src.info).toEqual({ file: p, name: p, kind: 'fifo', seekable: false });
    const it = src.lines()[Symbol.asyncIterator]();
    const first = await take(it, 5);
    expect(first.map((l) => l.text)).toEqual(nl.slice(0, 5));
    await w.write(`${nl.slice(5, 10).join('\n')}\nunfinished`);
    const second = await take(it, 5);
    expect(second.map((l) => l.no)).toEqual([6, 7, 8, 9, 10]);
    await w.close();
    const rest = await take(it, 2);
    expect(rest).toEqual([{ no: 11, text: 'unfinished', start: Buffer.byteLength(text), end: Buffer.byteLength(text) + 10, unterminated: true }]);
    await expect(src.digest()).rejects.toThrow('is read once');
  });

  it('a FIFO: head() waits for 4096 bytes (not for the end), gives the head key, then the lines come from the start', async () => {
    const p = fifo();
    const text = traceText(60); // ~7.5 KB
    const opening = openSource(p);
    const w = await openFile(p, 'w');
    const firstPart = Buffer.from(text).subarray(0, 5000);
    await w.write(firstPart);
    const src = await opening;
    const head = await Promise.race([src.head(), new Promise<'waited for EOF'>((r) => setTimeout(() => r('waited for EOF'), 10_000))]);
    expect(head).toEqual(Buffer.from(text).subarray(0, HEAD_BYTES));
    expect(await src.headKey()).toBe(`head-${sha256(Buffer.from(text).subarray(0, HEAD_BYTES))}`);
    const it = src.lines()[Symbol.asyncIterator]();
    const complete = firstPart.toString().split('\n').length - 1; // the lines complete in the first 5000 bytes
    const before = await take(it, complete);
    expect(before[0]!.no).toBe(1);
    await w.write(Buffer.from(text).subarray(5000));
    await w.close();
    const after = await take(it, 100);
    expect([...before, ...after].map((l) => l.text).join('\n')).toBe(text.slice(0, -1));
  });

  it('gzip on a FIFO is decompressed as it arrives', async () => {
    const p = fifo();
    const text = traceText(200);
    const opening = openSource(p);
    const w = await openFile(p, 'w');
    await w.write(gzipSync(text));
    const src = await opening;
    expect(src.info).toMatchObject({ kind: 'fifo', compressed: 'gzip' });
    const it = src.lines()[Symbol.asyncIterator]();
    expect((await take(it, 200)).map((l) => l.text).join('\n')).toBe(text.slice(0, -1));
    await w.close();
    expect((await take(it, 1)).length).toBe(0);
  });

  it("standard input ('-') is streamed, not spooled: lines reach the reader before stdin closes", async () => {
    const child = join(DIR, 'stdin-child.mts');
    writeFileSync(
      child,
      `import { openSource } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'import', 'read.ts')).href)};\n` +
        `const src = await openSource('-');\n` +
        `process.stdout.write(JSON.stringify(src.info) + '\\n');\n` +
        `for await (const l of src.lines()) process.stdout.write(JSON.stringify(l) + '\\n');\n`,
    );
    const p = spawn(process.execPath, ['--import', 'tsx', child], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
    const until = async (pred: () => boolean, what: string) => {
      for (let t = 0; !pred(); t += 20) {
        if (t > 20_000) throw new Error(`timed out waiting for ${what}; stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const text = traceText(6);
    const half = text.split('\n').slice(0, 3).join('\n') + '\n';
    p.stdin.write(half);
    await until(() => out.split('\n').length > 4, 'the first 3 lines');
    expect(p.exitCode).toBeNull(); // still running: stdin is open
    const got = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(got[0]).toEqual({ file: '-', name: '<stdin>', kind: 'stdin', seekable: false });
    expect(got.slice(1).map((l) => l.no)).toEqual([1, 2, 3]);
    p.stdin.end(text.slice(half.length));
    expect(await exited).toBe(0);
    const lines = out
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => JSON.parse(l) as Line);
    expect(lines).toEqual(reference(Buffer.from(text)));
  });

  it('a character device is a stream', async () => {
    const src = await openSource('/dev/null');
    expect(src.info).toEqual({ file: '/dev/null', name: '/dev/null', kind: 'char-device', seekable: false });
    expect(await src.head()).toEqual(Buffer.alloc(0));
    expect(await src.headKey()).toBe(`head-${sha256(Buffer.alloc(0))}`);
    expect(await all(src.lines())).toEqual([]);
  });
});

describe('identity and errors', () => {
  it('the digest of a plain file is the SHA-256 of its bytes (as sources.digest holds), its head key that of its first 4096', async () => {
    const bytes = Buffer.from(traceText(100));
    const p = file(bytes);
    const src = await openSource(p);
    expect(await src.digest()).toBe(sha256(bytes));
    expect(await src.head()).toEqual(bytes.subarray(0, 4096));
    expect(await src.headKey()).toBe(`head-${sha256(bytes.subarray(0, 4096))}`);
    const short = await openSource(file('abc\n'));
    expect(await short.headKey()).toBe(`head-${sha256(Buffer.from('abc\n'))}`);
  });

  it('a directory, a missing file: cannot read NAME: …', async () => {
    const d = join(DIR, 'a-dir');
    mkdirSync(d);
    await expect(openSource(d)).rejects.toThrow(new ReadError(`cannot read ${d}: EISDIR: illegal operation on a directory, read`));
    const missing = join(DIR, 'missing.trace');
    const err = await openSource(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReadError);
    expect((err as ReadError).exitCode).toBe(2);
    expect((err as Error).message).toBe(`cannot read ${missing}: ENOENT: no such file or directory, stat '${missing}'`);
  });

  it('a file without read permission: cannot read NAME: EACCES … (as root: checked as nobody in a child process)', (ctx) => {
    const locked = join(DIR, 'locked');
    mkdirSync(locked);
    const secret = join(locked, 'secret.trace');
    writeFileSync(secret, 'x\n');
    chmodSync(secret, 0o000);
    const expected = `cannot read ${secret}: EACCES: permission denied, open '${secret}'`;
    if (process.getuid?.() !== 0) return expect(openSource(secret)).rejects.toThrow(expected);
    // Root reads any file: the check runs as nobody, who must be able to read the repository.
    chmodSync(DIR, 0o755);
    chmodSync(locked, 0o755);
    const readTs = join(ROOT, 'src', 'import', 'read.ts');
    const asNobody = { cwd: ROOT, uid: 65534, gid: 65534, encoding: 'utf8' as const };
    const probe = spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(readTs)}, require('fs').constants.R_OK)`], asNobody);
    if (probe.status !== 0) return ctx.skip(`user nobody cannot read ${readTs} (a private checkout), so no process here lacks read permission`);
    const script =
      `const { openSource } = await import(${JSON.stringify(pathToFileURL(readTs).href)});` +
      `try { await openSource(${JSON.stringify(secret)}); console.log('opened'); } catch (e) { console.log(e.name + ' ' + e.exitCode + ' ' + e.message); }`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], asNobody);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(`ReadError 2 ${expected}`);
  });
});
