/**
 * Throughput of src/import/parse.ts: parses 1,000,000 generated lines (a realistic mix of
 * ftrace range-form map/unmap, old-form lines, faults, other events, trace-cmd and dmesg debug
 * lines) and prints lines per second. Run: npm run build && npm run bench:parse
 */
import { parseTraceLine } from '../../src/import/parse.js';

const N = Number(process.argv[2] ?? 1_000_000);

const h16 = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;

function line(i: number): string {
  const iova = BigInt(i) << 12n;
  const pa = 0x240000000n + (BigInt(i * 7) << 12n);
  const size = i % 3 === 0 ? 2097152n : 4096n;
  const sec = 500 + Math.floor(i / 1000);
  const ts = `${sec}.${String((i * 37) % 1_000_000).padStart(6, '0')}`;
  const task = ['vfio-test-1201', 'kworker/3:1-87', 'CPU 0/KVM-4125', 'gst-launch-1.0-606'][i % 4] ?? '';
  const head = `${task.padStart(22)}    [00${i % 8}] .....  ${ts.padStart(12)}: `;
  switch (i % 10) {
    case 0:
    case 1:
    case 2:
      return `${head}map: IOMMU: iova=${h16(iova)} - ${h16(iova + size)} paddr=${h16(pa)} size=${size}`;
    case 3:
    case 4:
      return `${head}unmap: IOMMU: iova=${h16(iova)} - ${h16(iova + size)} size=${size} unmapped_size=${size}`;
    case 5:
      return `${head}map: IOMMU: iova=${h16(iova)} paddr=${h16(pa)} size=${size}`;
    case 6:
      return `${head}sched_switch: prev_comm=vfio-test prev_pid=1201 prev_prio=120 prev_state=S ==> next_comm=swapper/3 next_pid=0 next_prio=120`;
    case 7:
      return `${head}io_page_fault: IOMMU:nvme 0000:02:00.0 iova=${h16(iova + 0x200n)} flags=0x0000`;
    case 8:
      return `       fio-3310  [001]  ${ts}: unmap:                IOMMU: iova=${h16(iova)} - ${h16(iova + size)} size=${size} unmapped_size=${size}`;
    default:
      return `[${ts.padStart(12)}] iommu: mapping: iova 0x${iova.toString(16)} pa ${h16(pa)} pgsize 0x${size.toString(16)} count 1`;
  }
}

// Joined and split again, as an importer reading a file gets them: flat strings, not the
// concatenation ropes the generator builds.
const lines = Array.from({ length: N }, (_, i) => line(i))
  .join('\n')
  .split('\n');
const counts = { record: 0, skip: 0, error: 0 };

// Warm up the JIT on a slice, then time the whole set.
for (let i = 0; i < Math.min(N, 50_000); i++) parseTraceLine(lines[i] ?? '');
const t0 = process.hrtime.bigint();
for (const l of lines) counts[parseTraceLine(l).kind]++;
const ns = Number(process.hrtime.bigint() - t0);

const perSecond = Math.round(N / (ns / 1e9));
console.log(`parseTraceLine: ${N.toLocaleString('en-US')} lines in ${(ns / 1e6).toFixed(0)} ms = ${perSecond.toLocaleString('en-US')} lines/s`);
console.log(`  records ${counts.record}, skipped ${counts.skip}, errors ${counts.error}`);
if (counts.error > 0) process.exitCode = 1;
