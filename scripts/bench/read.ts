/**
 * Throughput of the reader stage (src/import/read.ts) against the line reader the importer used
 * before it (StringDecoder on each chunk, String.indexOf, Buffer.byteLength of every line: copied
 * below as `previous`). Generates a trace of about 100 MB (argument: MB), reads it several times
 * with each, alternating, and prints lines/s (median). Then the same content gzip-, zstd- and
 * xz-compressed (zstd and xz made with the command-line tools, when on PATH).
 *
 * Run: npm run build && node dist/scripts/bench/read.js [MB]
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { findCommand } from '../../src/import/decompress.js';
import { openSource } from '../../src/import/read.js';

const MB = Number(process.argv[2] ?? 100);
const RUNS = 7;

/** The importer's reader before src/import/read.ts (src/cli/import.ts readLines, unchanged). */
async function* previous(path: string, start = 0, startLine = 0): AsyncGenerator<{ no: number; text: string; unterminated: boolean; end: number }> {
  const dec = new StringDecoder('utf8');
  let carry = '';
  let no = startLine;
  let offset = start;
  for await (const chunk of createReadStream(path, { start }) as AsyncIterable<Buffer>) {
    const text = carry + dec.write(chunk);
    let from = 0;
    for (;;) {
      const nl = text.indexOf('\n', from);
      if (nl < 0) break;
      no++;
      const line = text.slice(from, nl);
      offset += Buffer.byteLength(line, 'utf8') + 1;
      yield { no, text: line, unterminated: false, end: offset };
      from = nl + 1;
    }
    carry = text.slice(from);
    if (carry.length > 1 << 20) {
      no++;
      offset += Buffer.byteLength(carry, 'utf8');
      yield { no, text: carry, unterminated: false, end: offset };
      carry = '';
    }
  }
  carry += dec.end();
  if (carry.length) {
    no++;
    yield { no, text: carry, unterminated: true, end: offset + Buffer.byteLength(carry, 'utf8') };
  }
}

const h16 = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;

/** A mix like the parse bench's; `utf8` puts a non-ASCII task name on one line in 500. */
function line(i: number, utf8: boolean): string {
  const iova = BigInt(i) << 12n;
  const size = i % 3 === 0 ? 2097152n : 4096n;
  const ts = `${500 + Math.floor(i / 1000)}.${String((i * 37) % 1_000_000).padStart(6, '0')}`;
  const task = utf8 && i % 500 === 0 ? 'kworker/ü:1-87' : (['vfio-test-1201', 'kworker/3:1-87', 'CPU 0/KVM-4125', 'gst-launch-1.0-606'][i % 4] ?? '');
  const head = `${task.padStart(22)}    [00${i % 8}] .....  ${ts.padStart(12)}: `;
  switch (i % 4) {
    case 0:
    case 1:
      return `${head}map: IOMMU: iova=${h16(iova)} - ${h16(iova + size)} paddr=${h16(0x240000000n + iova)} size=${size}`;
    case 2:
      return `${head}unmap: IOMMU: iova=${h16(iova)} - ${h16(iova + size)} size=${size} unmapped_size=${size}`;
    default:
      return `${head}sched_switch: prev_comm=vfio-test prev_pid=1201 prev_prio=120 prev_state=S ==> next_comm=swapper/3 next_pid=0 next_prio=120`;
  }
}

async function generate(path: string, utf8: boolean): Promise<number> {
  const out = createWriteStream(path);
  let bytes = 0;
  let n = 0;
  const target = MB * 1e6;
  while (bytes < target) {
    let s = '';
    for (let k = 0; k < 10_000; k++) s += `${line(n++, utf8)}\n`;
    bytes += Buffer.byteLength(s);
    if (!out.write(s)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  return n;
}

interface Timed {
  /** Wall-clock seconds and CPU seconds (user + system) of the process. */
  s: number;
  cpu: number;
  lines: number;
  end: number;
}

async function time(read: () => AsyncIterable<{ no: number; text: string; end: number }>): Promise<Timed> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  let lines = 0;
  let end = 0;
  let chars = 0;
  for await (const l of read()) {
    lines = l.no;
    end = l.end;
    chars += l.text.length;
  }
  const c = process.cpuUsage(c0);
  if (chars < 0) console.log(chars); // keeps the text used
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6, lines, end };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** Rates of runs: median and best lines/s of wall time, and median lines per CPU second. */
function rates(ts: Timed[]): { median: number; best: number; cpu: number; text: string } {
  const wall = ts.map((t) => t.lines / t.s);
  const cpu = ts.map((t) => t.lines / t.cpu);
  const m = median(wall);
  const b = Math.max(...wall);
  const c = median(cpu);
  return { median: m, best: b, cpu: c, text: `${fmt(m)} lines/s median, ${fmt(b)} best; ${fmt(c)} lines per CPU-second (runs: ${wall.map(fmt).join(', ')})` };
}

async function compare(path: string, label: string): Promise<void> {
  const size = statSync(path).size;
  // The source is opened (its first bytes read) outside the timed part; its lines() are timed.
  const fresh = async (p: string) => {
    const src = await openSource(p);
    return () => src.lines();
  };
  await time(() => previous(path)); // page cache and JIT
  await time(await fresh(path));
  const old: Timed[] = [];
  const neu: Timed[] = [];
  let check = '';
  for (let r = 0; r < RUNS; r++) {
    const a = await time(() => previous(path));
    const b = await time(await fresh(path));
    old.push(a);
    neu.push(b);
    check = `${a.lines} lines, end ${a.end} vs ${b.lines} lines, end ${b.end}`;
    if (b.end !== size || b.lines !== a.lines) throw new Error(`new reader: ${check} (file ${size} bytes)`);
  }
  const o = rates(old);
  const n = rates(neu);
  console.log(`${label} (${(size / 1e6).toFixed(0)} MB): ${check}`);
  console.log(`  previous (StringDecoder + indexOf + byteLength): ${o.text}`);
  console.log(`  src/import/read.ts (bytes, isAscii fast path):  ${n.text}`);
  console.log(
    `  new/previous: ${(n.median / o.median).toFixed(2)} (median), ${(n.best / o.best).toFixed(2)} (best), ${(n.cpu / o.cpu).toFixed(2)} (per CPU-second)`,
  );
}

async function compressed(plain: string, dir: string): Promise<void> {
  const files: Array<[string, string]> = [];
  const gz = join(dir, 'bench.trace.gz');
  await pipeline(createReadStream(plain), createGzip({ level: 6 }), createWriteStream(gz));
  files.push(['gzip (node:zlib)', gz]);
  if (findCommand('zstd')) {
    spawnSync('zstd', ['-q', '-f', '-3', plain, '-o', join(dir, 'bench.trace.zst')]);
    files.push(['zstd -3 (fzstd)', join(dir, 'bench.trace.zst')]);
  } else console.log('zstd: not on PATH, skipped');
  if (findCommand('xz')) {
    spawnSync('xz', ['-k', '-f', '-T1', '-1', plain]);
    files.push(['xz -1 (xz-decompress)', `${plain}.xz`]);
  } else console.log('xz: not on PATH, skipped');
  const size = statSync(plain).size;
  for (const [label, f] of files) {
    const runs: number[] = [];
    let lines = 0;
    for (let r = 0; r < 3; r++) {
      const src = await openSource(f);
      const t = await time(() => src.lines());
      if (t.end !== size) throw new Error(`${label}: ended at ${t.end}, not ${size}`);
      runs.push(t.s);
      lines = t.lines;
    }
    const s = median(runs);
    console.log(
      `${label}: ${(statSync(f).size / 1e6).toFixed(1)} MB -> ${(size / 1e6).toFixed(0)} MB, ${fmt(lines / s)} lines/s, ${(size / 1e6 / s).toFixed(0)} MB/s of text (median of 3)`,
    );
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'iommu-ledger-bench-read-'));
  try {
    const ascii = join(dir, 'bench.trace');
    const utf8 = join(dir, 'bench-utf8.trace');
    console.log(`generating ${MB} MB traces in ${dir} ...`);
    await generate(ascii, false);
    await generate(utf8, true);
    await compare(ascii, 'ASCII trace');
    await compare(utf8, 'trace with a UTF-8 task name on 1 line in 500');
    await compressed(ascii, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
