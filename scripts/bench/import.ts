/**
 * Import benchmark (issue 5): a generated ftrace file of N lines (modern range form, 5-char
 * flags, some sched_switch noise) imported with projections, against a raw better-sqlite3 insert
 * of the same number of rows (10,000 per transaction) measured in the same run; peak RSS of the
 * import; and the end-to-end start-up of query commands on the resulting ledger.
 *
 *   npm run bench:import -- [lines=1000000]      (BENCH_KEEP=1 keeps the trace and the ledger)
 */
import Database from 'better-sqlite3';
import { execFileSync, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSize } from '../../src/core/address.js';
import { workload } from './workload.js';

const N = Number(process.argv[2] ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), 'iommu-ledger-import-bench-'));
const trace = join(dir, 'trace.txt');
// The command as installed (package.json bin): the bundle.
const cli = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'iommu-ledger.js');
const hex16 = (v: bigint) => `0x${v.toString(16).padStart(16, '0')}`;

async function writeTrace(): Promise<void> {
  const out = createWriteStream(trace);
  out.write(
    '# tracer: nop\n#\n# entries-in-buffer/entries-written: 0/0   #P:2\n#\n#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n#              | |         |   |||||     |         |\n',
  );
  const g = workload(42, 'x');
  g.next(); // the domain command
  let ts = 1000_000000n;
  for (let i = 0; i < N; i++) {
    ts += 13n;
    const stamp = `${ts / 1000000n}.${(ts % 1000000n).toString().padStart(6, '0')}`;
    if (i % 20 === 19) {
      out.write(
        `          <idle>-0       [001] d..2.  ${stamp}: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=qemu next_pid=1201 next_prio=120\n`,
      );
      continue;
    }
    const c = g.next() as Record<string, string>;
    const iova = BigInt(c.iova!);
    if (c.op === 'map') {
      const size = parseSize(c.size!);
      out.write(
        `  qemu-system-x86-1201    [000] .....  ${stamp}: map: IOMMU: iova=${hex16(iova)} - ${hex16(iova + size)} paddr=${hex16(BigInt(c.paddr!))} size=${size}\n`,
      );
    } else if (c.op === 'unmap') {
      const size = parseSize(c.size!);
      out.write(
        `  qemu-system-x86-1201    [000] .....  ${stamp}: unmap: IOMMU: iova=${hex16(iova)} - ${hex16(iova + size)} size=${size} unmapped_size=${size}\n`,
      );
    } else {
      out.write(`   kworker/0:1-87      [000] d.h..  ${stamp}: io_page_fault: IOMMU:DMAR 0000:03:00.0 iova=${hex16(iova)} flags=0x0000\n`);
    }
    if (out.writableNeedDrain) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
}

function time(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

await writeTrace();
const lines = N + 6;
console.log(
  `iommu-ledger import bench: ${N.toLocaleString('en-US')}-line ftrace file (${(statSync(trace).size / 2 ** 20).toFixed(0)} MiB), node ${process.version}`,
);

// Raw baseline: the same number of rows, built, stringified and inserted 10,000 per transaction.
const raw = new Database(join(dir, 'raw.db'));
raw.pragma('journal_mode = WAL');
raw.pragma('synchronous = FULL');
raw.exec('CREATE TABLE events (position INTEGER PRIMARY KEY, type TEXT NOT NULL, data TEXT NOT NULL)');
const ins = raw.prepare('INSERT INTO events (position, type, data) VALUES (?, ?, ?)');
const g = workload(42, 'x');
const rawMs = time(() => {
  for (let b = 0; b < N; b += 10_000) {
    raw.transaction(() => {
      for (let i = b; i < Math.min(N, b + 10_000); i++) {
        const c = g.next();
        ins.run(i + 1, c.op as string, JSON.stringify(c));
      }
    })();
  }
});
raw.close();

// The import, as a user runs it: a separate process, so its peak RSS is its own (GNU time -f %M).
const db = join(dir, 'ledger.db');
let run: ReturnType<typeof spawnSync> | undefined;
const importMs = time(() => {
  run = spawnSync('/usr/bin/time', ['-f', 'PEAK_RSS_KB=%M', process.execPath, cli, '--db', db, 'import', trace, '--profile', 'intel-vtd'], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
});
if (run?.status !== 0) throw new Error(`import failed: ${String(run?.stderr)}`);
const peakKb = Number(/PEAK_RSS_KB=(\d+)/.exec(String(run.stderr))?.[1] ?? 0);
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000).toLocaleString('en-US');
console.log(
  String(run.stdout)
    .trim()
    .split('\n')
    .map((l) => `  | ${l}`)
    .join('\n'),
);
console.log(
  `${'import with projections (lines/s)'.padEnd(44)} ${rate(lines, importMs).padStart(12)}   raw insert ${rate(N, rawMs).padStart(10)} rows/s   ratio ${(rawMs / importMs).toFixed(2)}`,
);
console.log(`${'peak RSS of the import (MB)'.padEnd(44)} ${(peakKb / 1024).toFixed(0).padStart(12)}`);
for (const args of [
  ['audit', 'over-unmaps', '--json'],
  ['explain', '0x100000010', '--domain', 'as1'],
  ['state', '--domain', 'as1', '--at', String(Math.floor(N / 2))],
]) {
  const times: number[] = [];
  for (let i = 0; i < 5; i++)
    times.push(time(() => execFileSync(process.execPath, [cli, '--db', db, ...args], { stdio: ['ignore', 'ignore', 'ignore'], maxBuffer: 1 << 26 })));
  times.sort((a, b) => a - b);
  console.log(`${`start-up: ${args.slice(0, 2).join(' ')} (ms, median of 5)`.padEnd(44)} ${times[2]!.toFixed(0).padStart(12)}`);
}
if (process.env.BENCH_KEEP) console.log(`kept ${dir} (trace.txt, ledger.db)`);
else rmSync(dir, { recursive: true, force: true });
