/**
 * Prints a truth as Linux 6.1 prints /sys/kernel/tracing/trace (kernel/trace/trace.c
 * print_func_help_header_irq, trace_output.c trace_print_context, include/trace/events/iommu.h):
 *
 *   `%16s-%-7d [%03d] FLAGS %5lu.%06lu: EVENT: PAYLOAD`
 *
 * - Each CPU's trace clock reads true time + skewNs[cpu]; the printed timestamp is that clock
 *   in microseconds, rounded to nearest (ns2usecs adds 500 ns).
 * - ftrace merges the per-CPU buffers by timestamp: records are printed in order of printed
 *   microsecond; one CPU's records keep their order. Records of different CPUs that print the
 *   same microsecond come in their clocks' order, or, with the `ties` option, in an order the
 *   recipe picks per group (tieModes: 0 clock order, 1 adversarial = the truly latest first,
 *   2 CPUs ascending, 3 CPUs descending): an unmap can print before the map it undoes.
 */
import { mix } from './workload.js';
import type { Truth, TruthEvent } from './truth.js';

export interface RenderedRecord {
  /** 1-based line number in the file. */
  lineNo: number;
  /** seq of the truth event. */
  seq: number;
  /** The task name as printed (`<...>` when saved_cmdlines lost it). */
  comm: string;
  /** The printed timestamp, in µs of the CPU's trace clock. */
  us: number;
  /** The timestamp text as printed, without padding (`511.102331`). */
  timestamp: string;
}

export interface RenderedTrace {
  lines: string[];
  /** lines joined, each ending with `\n`. */
  text: string;
  /** `#` header lines before the first record. */
  headerLines: number;
  /** The printed records, in file order. */
  records: RenderedRecord[];
}

const HEADER_TAIL = [
  '#',
  '#                                _-----=> irqs-off/BH-disabled',
  '#                               / _----=> need-resched',
  '#                              | / _---=> hardirq/softirq',
  '#                              || / _--=> preempt-depth',
  '#                              ||| / _-=> migrate-disable',
  '#                              |||| /     delay',
  '#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION',
  '#              | |         |   |||||     |         |',
];

export function hex16(v: bigint): string {
  return `0x${v.toString(16).padStart(16, '0')}`;
}

/** The event name and payload (print fmt of include/trace/events/iommu.h, range form). */
export function payload(ev: TruthEvent): [string, string] {
  switch (ev.kind) {
    case 'map':
      return ['map', `IOMMU: iova=${hex16(ev.iova)} - ${hex16(ev.iova + ev.size)} paddr=${hex16(ev.paddr)} size=${ev.size}`];
    case 'unmap':
      return ['unmap', `IOMMU: iova=${hex16(ev.iova)} - ${hex16(ev.iova + ev.size)} size=${ev.size} unmapped_size=${ev.unmapped}`];
    case 'fault':
      return ['io_page_fault', `IOMMU:${ev.driver} ${ev.device} iova=${hex16(ev.iova)} flags=0x${ev.faultFlags.toString(16).padStart(4, '0')}`];
    case 'attach':
      return ['attach_device_to_domain', `IOMMU: device=${ev.device}`];
    case 'group':
      return ['add_device_to_group', `IOMMU: groupID=${ev.groupId} device=${ev.device}`];
  }
}

export function timestampText(us: number): string {
  return `${Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, '0')}`;
}

export function formatLine(comm: string, ev: TruthEvent, us: number): string {
  const [name, body] = payload(ev);
  const secs = String(Math.floor(us / 1e6)).padStart(5);
  const usec = String(us % 1e6).padStart(6, '0');
  return `${comm.padStart(16)}-${String(ev.pid).padEnd(7)} [${String(ev.cpu).padStart(3, '0')}] ${ev.flags} ${secs}.${usec}: ${name}: ${body}`;
}

/** The printed order: seqs of the printed events, in file order. */
export function printedOrder(truth: Truth): number[] {
  const clock = (e: TruthEvent): number => e.tNs + truth.skewNs[e.cpu]!;
  const usOf = (e: TruthEvent): number => Math.floor((clock(e) + 500) / 1000);
  const printed = truth.events.filter((e) => e.printed);
  printed.sort((x, y) => usOf(x) - usOf(y) || clock(x) - clock(y) || x.cpu - y.cpu || x.seq - y.seq);
  const modes = truth.options.ties ? truth.recipe.tieModes : [];
  const out: number[] = [];
  let group = 0;
  for (let i = 0; i < printed.length;) {
    let j = i + 1;
    const us = usOf(printed[i]!);
    while (j < printed.length && usOf(printed[j]!) === us) j++;
    const run = printed.slice(i, j);
    const cpus = [...new Set(run.map((e) => e.cpu))];
    if (cpus.length > 1 && modes.length > 0) out.push(...mergeTie(run, cpus, (modes[group++ % modes.length] ?? 0) % 4));
    else out.push(...run.map((e) => e.seq));
    i = j;
  }
  return out;
}

/** One microsecond's records from several CPUs, each CPU's kept in order. */
function mergeTie(run: TruthEvent[], cpus: number[], mode: number): number[] {
  if (mode === 0) return run.map((e) => e.seq);
  const queues = new Map<number, TruthEvent[]>();
  for (const e of run) {
    const q = queues.get(e.cpu);
    if (q) q.push(e);
    else queues.set(e.cpu, [e]);
  }
  if (mode === 2 || mode === 3) {
    const order = [...cpus].sort((x, y) => (mode === 2 ? x - y : y - x));
    return order.flatMap((c) => queues.get(c)!.map((e) => e.seq));
  }
  // Adversarial: always the CPU whose next record is truly the latest.
  const out: number[] = [];
  for (;;) {
    let best: TruthEvent[] | undefined;
    for (const q of queues.values()) if (q.length > 0 && (best === undefined || q[0]!.tNs > best[0]!.tNs)) best = q;
    if (best === undefined) return out;
    out.push(best.shift()!.seq);
  }
}

/** `<...>` for some tasks when the lostComms option is on (never for pid 0, which is `<idle>`). */
function printedComm(truth: Truth, ev: TruthEvent): string {
  if (truth.options.lostComms && ev.pid !== 0 && mix(ev.seq, ev.pid) % 7 === 0) return '<...>';
  return ev.comm;
}

export function renderTrace(truth: Truth): RenderedTrace {
  const order = printedOrder(truth);
  const lines = ['# tracer: nop', '#', `# entries-in-buffer/entries-written: ${order.length}/${order.length}   #P:${truth.cpus}`, ...HEADER_TAIL];
  const headerLines = lines.length;
  const records: RenderedRecord[] = [];
  for (const seq of order) {
    const ev = truth.events[seq]!;
    const us = Math.floor((ev.tNs + truth.skewNs[ev.cpu]! + 500) / 1000);
    const comm = printedComm(truth, ev);
    lines.push(formatLine(comm, ev, us));
    records.push({ lineNo: lines.length, seq, comm, us, timestamp: timestampText(us) });
  }
  return { lines, text: lines.map((l) => `${l}\n`).join(''), headerLines, records };
}
