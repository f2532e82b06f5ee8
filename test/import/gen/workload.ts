/**
 * Builds a truth (truth.ts) from a recipe: a Linux 6.1 machine whose devices do DMA through
 * iommu-dma, as in /work/shared/reference/capture-qemu-traces.md, plus a VFIO task.
 *
 * - Boot: each device's default domain is created and the device attached (`init-1`, CPU 0,
 *   ~2.07 s); drivers probe at ~5.9 s (`modprobe-112`) and allocate coherent queues.
 * - Steps, in true time order, each after a gap (recipe Step.g):
 *   single  dma_map_single: one IOVA allocation, one map record; unmapped later by `complete`.
 *   sg      dma_map_sg: one allocation for the whole list, one map record per physically
 *           contiguous segment (ascending contiguous IOVAs, same task and CPU, ~0.3-1.5 µs
 *           apart); unmapped later by ONE unmap of the whole range.
 *   large   an sg of 2 MiB physically contiguous, 2 MiB-aligned chunks (the allocation is
 *           size-aligned, so the profile maps them as large pages where it has them).
 *   coherent dma_alloc_coherent: never unmapped.
 *   complete the unmap of an in-flight mapping, usually in interrupt context on any CPU (task
 *           `<idle>` or whatever runs there, flags `d.h1.`), sometimes by the mapping task;
 *           the IOVA goes back to the rcache of the CPU that unmapped it.
 *   fault   io_page_fault at a live IOVA or one unmapped shortly before (`complete` also
 *           follows some unmaps with a use-after-unmap fault).
 *   vfio    a VFIO session: attach the device to a new domain, vfio_test_domain_fgsp (map 8K
 *           at 0, unmap 4K, and the other 4K when only 4K went), then VFIO_IOMMU_MAP_DMA /
 *           UNMAP_DMA iterations (one map per physically contiguous chunk; unmap per chunk, or
 *           4K at a time stepping by the returned size), and closing: re-attach to the default
 *           domain, then unmap what is left.
 * - Every map and unmap is applied to a core Domain of its domain's profile: the unmap's
 *   unmapped_size is what Domain.unmap returns, so the truth matches the profile by construction.
 *
 * Every recipe builds a valid truth: out-of-range choices are taken modulo, impossible steps
 * (nothing in flight, a VFIO slot in use) fall back or do nothing.
 */
import { Domain, type RunChanges } from '../../../src/core/domain.js';
import { resolveProfile } from '../../../src/core/profile.js';
import { IovaDomain } from './iova.js';
import { normalize, subtract, type ByteRange } from './ranges.js';
import type {
  AttachEvent,
  FaultCause,
  FaultEvent,
  GroupEvent,
  MapEvent,
  Recipe,
  Removal,
  ResolvedOptions,
  Step,
  Task,
  Truth,
  TruthDomain,
  TruthEvent,
  UnmapEvent,
} from './truth.js';

const K4 = 4096n;
const M1 = 1n << 20n;
const M2 = 2n << 20n;

/** What Step.op selects (op % 20): weights of a busy block-I/O machine. */
export const STEP_KINDS = [
  'single',
  'single',
  'single',
  'single',
  'single',
  'complete',
  'complete',
  'complete',
  'complete',
  'complete',
  'complete',
  'complete',
  'sg',
  'sg',
  'sg',
  'large',
  'coherent',
  'fault',
  'vfio',
  'vfio',
] as const;
export type StepKind = (typeof STEP_KINDS)[number];

const DMA_DEVICES = [
  { device: '0000:00:02.0', driver: 'virtio-pci' },
  { device: '0000:00:03.0', driver: 'nvme' },
  { device: '0000:00:04.0', driver: 'ahci' },
  { device: '0000:00:05.0', driver: 'e1000e' },
] as const;
const EDU = { device: '0000:00:06.0', driver: 'vfio-pci' } as const;
const LPC = { device: '0000:00:1f.0', driver: 'lpc_ich' } as const;

const INIT: Task = { comm: 'init', pid: 1 };
const MODPROBE: Task = { comm: 'modprobe', pid: 112 };
const IDLE: Task = { comm: '<idle>', pid: 0 };
/** amd_iommu_int_thread runs in the IRQ thread of "AMD-Vi": it reports the page faults. */
const AMDVI: Task = { comm: 'irq/24-AMD-Vi', pid: 97 };
/** Tasks that issue block I/O ('kworker' is the per-CPU kblockd worker of the chosen CPU). */
const IO_TASKS: ReadonlyArray<Task | 'kworker'> = [
  'kworker',
  { comm: 'dd', pid: 223 },
  'kworker',
  { comm: 'jbd2/vda1-8', pid: 190 },
  { comm: 'fio', pid: 3310 },
  { comm: 'kworker/u8:2', pid: 51 },
  { comm: 'gst-launch-1.0', pid: 606 },
  { comm: 'Web Content', pid: 2345 },
];
const PROC_FLAGS = ['.....', '.....', '...1.'] as const;
const IRQ_FLAGS = ['d.h1.', 'd.h2.', 'd.H2.', 'd.h..'] as const;

function kworker(cpu: number): Task {
  return { comm: `kworker/${cpu}:1H`, pid: 44 + 12 * cpu };
}

/** A small deterministic hash of small integers (choices derived from a step's numbers). */
export function mix(...xs: number[]): number {
  let h = 0x9e3779b9;
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** The gap before a step, ns: class g % 10 (sub-µs to tens of ms), magnitude g / 10. */
export function gapNs(g: number): number {
  const m = Math.floor(g / 10) % 26;
  switch (g % 10) {
    case 0:
      return 10_000 + m * 1_600; // 10-50 µs
    case 1:
      return 50_000 + m * 6_000; // 50-200 µs
    case 2:
      return 80 + m * 35; // < 1 µs
    case 3:
      return 1_000 + m * 80; // 1-3 µs
    case 4:
      return 3_000 + m * 280; // 3-10 µs
    case 5:
      return 200_000 + m * 32_000; // 0.2-1 ms
    case 6:
      return 1_000_000 + m * 160_000; // 1-5 ms
    case 7:
      return 150 + m * 31; // < 1 µs
    case 8:
      return 1_000 + m * 40; // 1-2 µs
    default:
      return 5_000_000 + m * 1_800_000; // 5-50 ms
  }
}

/** Physical memory: page-aligned chunks below 2 GiB, never contiguous with the previous one. */
class Phys {
  private k = 0;
  private lastEnd = -1n;

  chunk(bytes: bigint, align: bigint): bigint {
    this.k++;
    const lo = 0x4000000n;
    const slots = (0x7c000000n - bytes) / align;
    let base = lo + (BigInt(mix(this.k, 77)) % slots) * align;
    if (base === this.lastEnd) base += 2n * align;
    this.lastEnd = base + bytes;
    return base;
  }
}

class Stop {}
const STOP = new Stop();

interface DmaOp {
  op: number;
  domain: number;
  pfn: number;
  iova: bigint;
  size: bigint;
  task: Task;
  cpu: number;
  maps: number[];
}

interface Chunk {
  iova: bigint;
  paddr: bigint;
  size: bigint;
}

interface VfioMapping {
  op: number;
  iova: bigint;
  size: bigint;
  chunks: Chunk[];
}

interface Session {
  domain: number;
  task: Task;
  cpu: number;
  op: number;
  mappings: VfioMapping[];
  /** Physical 2 MiB pages of the THP arena, by huge-page index. */
  thp: Map<number, bigint>;
}

/** Removed bytes per map record: its runs before the operation minus its runs after it. */
function removals(changes: RunChanges): Removal[] {
  const before = new Map<number, ByteRange[]>();
  const after = new Map<number, ByteRange[]>();
  const add = (m: Map<number, ByteRange[]>, ref: number, r: ByteRange): void => {
    const l = m.get(ref);
    if (l) l.push(r);
    else m.set(ref, [r]);
  };
  for (const r of changes.before) add(before, r.origin.ref, { start: r.iova, end: r.iova + r.pageSize * r.count });
  for (const r of changes.after) add(after, r.origin.ref, { start: r.iova, end: r.iova + r.pageSize * r.count });
  const out: Removal[] = [];
  for (const [ref, ranges] of before) {
    for (const piece of subtract(normalize(ranges), normalize(after.get(ref) ?? []))) out.push({ map: ref, ...piece });
  }
  return out.sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
}

export class WorkloadBuilder {
  readonly events: TruthEvent[] = [];
  readonly domains: TruthDomain[] = [];
  readonly cpus: number;
  private readonly cores: Domain[] = [];
  private readonly allocs: Array<IovaDomain | undefined> = [];
  private readonly dma: number[] = [];
  private readonly machineProfile: string;
  private now = 0;
  private ops = 0;
  private inflight: DmaOp[] = [];
  private readonly coherent: DmaOp[] = [];
  private recentUnmaps: number[] = [];
  private readonly cpuTask: Array<{ task: Task; until: number }> = [];
  private readonly taskCpu = new Map<string, { cpu: number; last: number }>();
  private readonly phys = new Phys();
  private session: Session | undefined;
  private sessions = 0;
  private eduDomain: number | undefined;
  private groups = 0;
  /** Events of the boot (attaches, probe-time maps): a cut falls after them. */
  private bootEvents = 0;

  constructor(
    readonly recipe: Recipe,
    readonly opts: ResolvedOptions,
  ) {
    this.cpus = 2 + (recipe.cpus % 3);
    this.machineProfile = opts.profiles[recipe.profile % opts.profiles.length]!;
    for (let c = 0; c < this.cpus; c++) this.cpuTask.push({ task: IDLE, until: 0 });
  }

  /** Runs the recipe to the end (or to maxRecords events) and returns the truth. */
  build(): Truth {
    try {
      this.boot();
      this.bootEvents = this.events.length;
      for (const s of this.recipe.steps) this.step(s);
      // Too few printed records: more of the simplest work (map, then complete it).
      for (let i = 0; this.printedCount() < this.opts.minRecords && i < 10_000; i++) {
        this.step({ op: i % 2 === 0 ? 0 : 5, a: i, b: 1, c: mix(i, 3) % 64, g: 0 });
      }
    } catch (e) {
      if (e !== STOP) throw e;
    }
    const cut = this.cutIndex(this.events.length);
    for (const ev of this.events) ev.printed = ev.seq >= cut;
    const truth: Truth = {
      recipe: this.recipe,
      options: this.opts,
      cpus: this.cpus,
      skewNs: Array.from({ length: this.cpus }, (_, c) => (this.recipe.skewNs[c] ?? 0) % (this.opts.skewUs * 1000 + 1)),
      preTraceCount: cut,
      domains: this.domains,
      events: this.events,
    };
    if (cut > 0) truth.cutNs = this.events[cut - 1]!.tNs + 1;
    return truth;
  }

  /**
   * Events before this index are before the cut (not printed): tracing is switched on during
   * the workload, after the boot, up to 70% of the way into the workload's events.
   */
  private cutIndex(n: number): number {
    const cut = this.recipe.cut % 1001;
    if (!this.opts.preTrace || cut === 0 || n < 2) return 0;
    const boot = Math.min(this.bootEvents, n - 1);
    let i = Math.min(n - 1, Math.max(1, boot + Math.floor(((n - boot) * 0.7 * cut) / 1000)));
    // Not inside the maps of one scatter-gather list: iommu_map_sg() issues them in one loop of a
    // few microseconds, which tracing is (all but) never switched on in the middle of.
    const ev = this.events;
    while (i > 1 && ev[i]!.kind === 'map' && ev[i - 1]!.kind === 'map' && ev[i]!.op === ev[i - 1]!.op) i--;
    return i;
  }

  private printedCount(): number {
    return this.events.length - this.cutIndex(this.events.length);
  }

  // -------------------------------------------------------------------------------------------
  // Domains and events

  private addDomain(d: Omit<TruthDomain, 'id'>): number {
    const id = this.domains.length;
    this.domains.push({ id, ...d });
    this.cores.push(new Domain(resolveProfile(d.profile)));
    let alloc: IovaDomain | undefined;
    if (d.role === 'dma') {
      alloc = new IovaDomain(1, this.cpus);
      // iova_reserve_iommu_regions / iova_reserve_pci_windows on x86: the MSI window and a
      // 32-bit PCI memory window are never handed out.
      if (/^(intel|amd)/.test(d.profile)) {
        alloc.reserve(0xfee00, 0xfeeff);
        alloc.reserve(0xc0000, 0xfebff);
      }
      this.dma.push(id);
    }
    this.allocs.push(alloc);
    return id;
  }

  private base(domain: number, task: Task, cpu: number, flags: string, op: number) {
    if (this.events.length >= this.opts.maxRecords) throw STOP;
    const ev = { seq: this.events.length, tNs: this.now, cpu, comm: task.comm, pid: task.pid, flags, domain, printed: true, op };
    this.now += 1;
    return ev;
  }

  private emitMap(domain: number, iova: bigint, size: bigint, paddr: bigint, task: Task, cpu: number, flags: string, op: number): MapEvent {
    const ev: MapEvent = { ...this.base(domain, task, cpu, flags, op), kind: 'map', iova, size, paddr };
    const r = this.cores[domain]!.map({ iova, paddr, size, ref: ev.seq });
    if (!r.ok) throw new Error(`generator: map ${iova.toString(16)}+${size} in ${this.domains[domain]!.name} failed: ${r.reason}`);
    this.events.push(ev);
    return ev;
  }

  private emitUnmap(domain: number, iova: bigint, size: bigint, task: Task, cpu: number, flags: string, op: number): UnmapEvent {
    const b = this.base(domain, task, cpu, flags, op);
    const r = this.cores[domain]!.unmap({ iova, size });
    if (!r.ok) throw new Error(`generator: unmap ${iova.toString(16)}+${size} in ${this.domains[domain]!.name} failed: ${r.reason}`);
    const ev: UnmapEvent = { ...b, kind: 'unmap', iova, size, unmapped: r.unmappedSize, removes: removals(r.changes) };
    this.events.push(ev);
    return ev;
  }

  private emitAttach(domain: number, device: string, task: Task, cpu: number, op: number): AttachEvent {
    const ev: AttachEvent = { ...this.base(domain, task, cpu, '.....', op), kind: 'attach', device };
    this.events.push(ev);
    return ev;
  }

  private emitGroup(domain: number, device: string, task: Task, cpu: number, op: number): GroupEvent {
    const ev: GroupEvent = { ...this.base(domain, task, cpu, '.....', op), kind: 'group', device, groupId: this.groups++ };
    this.events.push(ev);
    return ev;
  }

  private emitFault(domain: number, iova: bigint, cause: FaultCause, about: number | undefined, sel: number, op: number): FaultEvent {
    const d = this.domains[domain]!;
    const cpu = sel % this.cpus;
    let task: Task;
    let flags: string;
    if (d.profile === 'amd-v1') {
      task = AMDVI;
      flags = '.....';
    } else ({ task, flags } = this.irqContext(cpu, sel >> 2));
    const ev: FaultEvent = {
      ...this.base(domain, task, cpu, flags, op),
      kind: 'fault',
      iova,
      device: d.device,
      driver: d.driver,
      faultFlags: (sel >> 4) & 1,
      cause,
    };
    if (about !== undefined) ev.about = about;
    this.events.push(ev);
    return ev;
  }

  /** A process-context task for a map on (about) CPU c. */
  private processContext(taskSel: number, cpuSel: number): { task: Task; cpu: number; flags: string } {
    const kind = IO_TASKS[taskSel % IO_TASKS.length]!;
    let cpu = cpuSel % this.cpus;
    let task: Task;
    let flags: string;
    if (kind === 'kworker') {
      task = kworker(cpu);
      flags = 'd..1.';
    } else {
      task = kind;
      const prev = this.taskCpu.get(task.comm);
      // A task stays on its CPU for a while: it cannot be on two CPUs at once.
      if (prev && this.now - prev.last < 200_000) cpu = prev.cpu;
      flags = PROC_FLAGS[Math.floor(taskSel / IO_TASKS.length) % PROC_FLAGS.length]!;
    }
    this.taskCpu.set(task.comm, { cpu, last: this.now });
    this.cpuTask[cpu] = { task, until: this.now + 2_000_000 };
    return { task, cpu, flags };
  }

  /** Interrupt context on CPU cpu: the task it interrupted (or `<idle>`), hardirq flags. */
  private irqContext(cpu: number, sel: number): { task: Task; flags: string } {
    const cur = this.cpuTask[cpu]!;
    const task = sel % 3 === 2 || this.now > cur.until ? IDLE : cur.task;
    return { task, flags: IRQ_FLAGS[Math.floor(sel / 3) % IRQ_FLAGS.length]! };
  }

  // -------------------------------------------------------------------------------------------
  // Boot

  private profileOfDma(d: number): string {
    if (!this.opts.mixedProfiles) return this.machineProfile;
    const sel = this.recipe.domainProfiles[d] ?? this.recipe.profile;
    return this.opts.profiles[sel % this.opts.profiles.length]!;
  }

  private boot(): void {
    const nDma = 1 + (this.recipe.domains % this.opts.maxDomains);
    for (let d = 0; d < nDma; d++) {
      const profile = this.profileOfDma(d);
      const bits = Math.min([32, 32, 32, 39, 48][(this.recipe.limits[d] ?? 0) % 5]!, resolveProfile(profile).iovaBits);
      this.addDomain({ name: `dma${d}`, role: 'dma', profile, ...DMA_DEVICES[d]!, limit: 1n << BigInt(bits) });
    }
    let floppy: number | undefined;
    if (this.opts.floppy) floppy = this.addDomain({ name: 'floppy', role: 'direct', profile: this.machineProfile, ...LPC });
    if (this.opts.vfio) {
      this.eduDomain = this.addDomain({ name: 'edu', role: 'idle', profile: this.machineProfile, device: EDU.device, driver: 'edu' });
    }
    // iommu_probe_device at boot: each device's group, then its default domain.
    const op = this.ops++;
    this.now = 2_075_556_000;
    for (const d of this.domains) {
      if (this.opts.groups) {
        this.emitGroup(d.id, d.device, INIT, 0, op);
        this.now += 1_000_000 + (mix(d.id, 1) % 1_500_000);
      }
      this.emitAttach(d.id, d.device, INIT, 0, op);
      this.now += 1_000_000 + (mix(d.id, 2) % 2_000_000);
      if (d.id === floppy) {
        // iommu_create_device_direct_mappings: the 16 MiB IOMMU_RESV_DIRECT_RELAXABLE region.
        this.emitMap(d.id, 0n, 16n * M1, 0n, INIT, 0, '.....', op);
        this.now += 500_000;
      }
    }
    // Driver probe: coherent queues and rings.
    this.now = 5_984_900_000;
    for (let i = 0; i < this.dma.length; i++) {
      const p = this.recipe.probe[i] ?? 0;
      for (let k = 0; k < p % 3; k++) {
        const cpu = (p >> 2) % this.cpus;
        const pages = 1 + (((p >> 4) + k) % 4);
        const o = this.dmaMap(this.dma[i]!, [{ pages, paddr: this.phys.chunk(BigInt(pages) * K4, K4) }], MODPROBE, cpu, '.....');
        if (o) this.coherent.push(o);
        this.now += 20_000 + (mix(i, k, p) % 200_000);
      }
      this.now += 1_000_000;
    }
    this.now += 500_000_000;
  }

  // -------------------------------------------------------------------------------------------
  // Steps

  private step(s: Step): void {
    this.now += gapNs(s.g);
    let kind: StepKind = STEP_KINDS[s.op % STEP_KINDS.length]!;
    if (kind === 'large' && !this.opts.largePages) kind = 'sg';
    if (kind === 'fault' && !this.opts.faults) kind = 'complete';
    if (kind === 'vfio' && !this.opts.vfio) kind = 'single';
    if (kind === 'complete' && this.inflight.length === 0) kind = 'single';
    switch (kind) {
      case 'single':
        return this.single(s);
      case 'sg':
        return this.sg(s, false);
      case 'large':
        return this.sg(s, true);
      case 'coherent':
        return this.coherentAlloc(s);
      case 'complete':
        return this.complete(s);
      case 'fault':
        return this.fault(s);
      case 'vfio':
        return this.vfio(s);
    }
  }

  private pickDma(a: number): number {
    return this.dma[a % this.dma.length]!;
  }

  /** One IOVA allocation mapped segment by segment (iommu_dma_map_sg / __iommu_map per run). */
  private dmaMap(domain: number, segs: Array<{ pages: number; paddr: bigint }>, task: Task, cpu: number, flags: string): DmaOp | undefined {
    const dom = this.domains[domain]!;
    const pages = segs.reduce((n, s) => n + s.pages, 0);
    const limitPfn = Number(dom.limit! >> 12n) - 1;
    const pfn = this.allocs[domain]!.allocFast(pages, limitPfn, cpu);
    if (pfn === undefined) return undefined;
    const iova = BigInt(pfn) << 12n;
    const op = this.ops++;
    const maps: number[] = [];
    let off = 0n;
    segs.forEach((sg, i) => {
      if (i > 0) this.now += 300 + (mix(op, i) % 1_200);
      const size = BigInt(sg.pages) * K4;
      maps.push(this.emitMap(domain, iova + off, size, sg.paddr, task, cpu, flags, op).seq);
      off += size;
    });
    return { op, domain, pfn, iova, size: off, task, cpu, maps };
  }

  private single(s: Step): void {
    const { task, cpu, flags } = this.processContext(s.c >> 2, s.c);
    const pages = [1, 1, 2, 1, 4, 1, 3, 8][s.b % 8]!;
    const o = this.dmaMap(this.pickDma(s.a), [{ pages, paddr: this.phys.chunk(BigInt(pages) * K4, K4) }], task, cpu, flags);
    if (o) this.inflight.push(o);
  }

  private sg(s: Step, large: boolean): void {
    const { task, cpu, flags } = this.processContext(s.c >> 2, s.c);
    const segs: Array<{ pages: number; paddr: bigint }> = [];
    if (large) {
      const n = 1 + (s.b % 3);
      for (let i = 0; i < n; i++) segs.push({ pages: 512, paddr: this.phys.chunk(M2, M2) });
      if ((s.b >> 2) % 2 === 1) segs.push({ pages: 1, paddr: this.phys.chunk(K4, K4) });
    } else {
      const n = 2 + (s.b % 5);
      for (let i = 0; i < n; i++) {
        const pages = [1, 1, 2, 1, 3, 1, 4, 2][mix(s.a, s.b, i) % 8]!;
        segs.push({ pages, paddr: this.phys.chunk(BigInt(pages) * K4, K4) });
      }
    }
    const o = this.dmaMap(this.pickDma(s.a), segs, task, cpu, flags);
    if (o) this.inflight.push(o);
  }

  private coherentAlloc(s: Step): void {
    const { task, cpu, flags } = this.processContext(s.c >> 2, s.c);
    const pages = 1 + (s.b % 4);
    const o = this.dmaMap(this.pickDma(s.a), [{ pages, paddr: this.phys.chunk(BigInt(pages) * K4, K4) }], task, cpu, flags);
    if (o) this.coherent.push(o);
  }

  /** __iommu_dma_unmap of an in-flight mapping, then free_iova_fast on the unmapping CPU. */
  private complete(s: Step): void {
    // b % 4 == 0: the newest mapping completes (fast I/O: often within the same microsecond).
    const i = s.b % 4 === 0 ? this.inflight.length - 1 : s.a % this.inflight.length;
    const o = this.inflight[i]!;
    const mode = (s.c >> 2) % 4;
    let cpu = s.c % this.cpus;
    let task: Task;
    let flags: string;
    if (mode === 3) {
      // The mapping task unmaps it itself (polled I/O), on the CPU it runs on now.
      task = o.task;
      cpu = this.taskCpu.get(o.task.comm)?.cpu ?? o.cpu;
      flags = '.....';
    } else ({ task, flags } = this.irqContext(cpu, mode === 2 ? 2 : s.c >> 4));
    const u = this.emitUnmap(o.domain, o.iova, o.size, task, cpu, flags, o.op);
    if (u.unmapped !== o.size) throw new Error(`generator: iommu-dma unmap of ${o.size} removed ${u.unmapped}`);
    this.inflight.splice(i, 1);
    this.allocs[o.domain]!.freeFast(o.pfn, Number(o.size / K4), cpu);
    this.recentUnmaps = [...this.recentUnmaps.slice(-5), u.seq];
    if (this.opts.faults && s.b % 8 === 7) {
      // The device touches the buffer once more: use after unmap.
      this.now += 2_000 + (mix(s.a, s.b) % 30_000);
      this.emitFault(o.domain, o.iova + faultOffset(o.size, s.a), 'after-unmap', u.seq, s.c >> 1, o.op);
    }
  }

  private fault(s: Step): void {
    const recent = this.recentUnmaps;
    if (s.b % 2 === 1 && recent.length > 0) {
      const u = this.events[recent[s.a % recent.length]!] as UnmapEvent;
      this.emitFault(u.domain, u.iova + faultOffset(u.size, s.b), 'after-unmap', u.seq, s.c, u.op);
      return;
    }
    const live = [...this.inflight, ...this.coherent];
    if (live.length === 0) return this.single(s);
    const o = live[s.a % live.length]!;
    this.emitFault(o.domain, o.iova + faultOffset(o.size, s.b), 'live', o.maps[0], s.c, o.op);
  }

  // -------------------------------------------------------------------------------------------
  // VFIO (drivers/vfio/vfio_iommu_type1.c, and the vfio-dma program of the capture document)

  private vfio(s: Step): void {
    if (this.session === undefined) return this.vfioOpen(s);
    if (s.b % 4 === 3) return this.vfioClose(s);
    return this.vfioIter(s);
  }

  private vfioOpen(s: Step): void {
    const n = this.sessions++;
    const task: Task = { comm: 'vfio-dma', pid: 180 + 4 * n };
    const cpu = s.c % this.cpus;
    const profile = this.machineProfile;
    const domain = this.addDomain({ name: `vfio${n}`, role: 'vfio', profile, device: EDU.device, driver: EDU.driver });
    const op = this.ops++;
    this.session = { domain, task, cpu, op, mappings: [], thp: new Map() };
    this.emitAttach(domain, EDU.device, task, cpu, op);
    // vfio_test_domain_fgsp: map two pages (an order-1 allocation) at the first usable IOVA,
    // unmap one; if only 4K went, unmap the other.
    this.now += 20_000 + (mix(n, 1) % 2_000_000);
    this.emitMap(domain, 0n, 2n * K4, this.phys.chunk(2n * K4, 2n * K4), task, cpu, '.....', op);
    this.now += 3_000 + (mix(n, 2) % 3_000_000);
    const u = this.emitUnmap(domain, 0n, K4, task, cpu, '.....', op);
    const fgsp = u.unmapped > K4;
    if (!fgsp) {
      this.now += 2_000 + (mix(n, 3) % 20_000);
      this.emitUnmap(domain, K4, K4, task, cpu, '.....', op);
    }
    const d = this.domains[domain]!;
    d.fgsp = fgsp;
    const legacy = resolveProfile(profile).semantics === 'legacy';
    d.stepping = this.opts.vfioStepping === 'force' ? legacy : this.opts.vfioStepping === 'auto' ? fgsp : false;
  }

  private vfioIter(s: Step): void {
    const sess = this.session!;
    const fragmented = !this.opts.largePages || s.b % 2 === 1;
    // vfio-dma's buffer sizes: 4K, 8K, 64K, 1M, 2M, 4M, 12K, 256K (the scattered arena: up to 16K).
    const size = fragmented ? [K4, 2n * K4, 3n * K4, 4n * K4][s.a % 4]! : [K4, 2n * K4, 0x10000n, M1, M2, 2n * M2, 3n * K4, 0x40000n][s.a % 8]!;
    const slot = s.c % 6;
    const iova = BigInt(slot + 1) * 0x1000000n + [0n, 0x100000n, 0x200000n][Math.floor(s.c / 6) % 3]!;
    // vfio_dma_do_map: an overlapping request fails (EEXIST) before anything is mapped.
    if (sess.mappings.some((m) => iova < m.iova + m.size && m.iova < iova + size)) return;
    const chunks: Chunk[] = [];
    if (fragmented) {
      // Pages faulted in a scattered order: every page its own physical chunk.
      for (let off = 0n; off < size; off += K4) chunks.push({ iova: iova + off, paddr: this.phys.chunk(K4, K4), size: K4 });
    } else {
      // The THP arena: 2 MiB pages, the buffer at a MiB offset, sometimes a few pages further.
      const start = BigInt((s.a >> 3) % 48) * M1 + ((s.b >> 1) % 3 === 1 ? K4 * BigInt(1 + ((s.b >> 3) % 5)) : 0n);
      for (let pos = start; pos < start + size;) {
        const h = Number(pos / M2);
        let base = sess.thp.get(h);
        if (base === undefined) {
          base = this.phys.chunk(M2, M2);
          sess.thp.set(h, base);
        }
        const end = BigInt(h + 1) * M2 < start + size ? BigInt(h + 1) * M2 : start + size;
        chunks.push({ iova: iova + (pos - start), paddr: base + (pos - BigInt(h) * M2), size: end - pos });
        pos = end;
      }
    }
    const op = this.ops++;
    for (const ch of chunks) {
      this.now += 2_000 + (mix(op, Number(ch.iova >> 12n)) % 18_000);
      this.emitMap(sess.domain, ch.iova, ch.size, ch.paddr, sess.task, sess.cpu, '.....', op);
    }
    const m: VfioMapping = { op, iova, size, chunks };
    if (s.a % 5 === 4) {
      sess.mappings.push(m); // left in place until the container is closed
      return;
    }
    this.now += 100_000 + (mix(op, 9) % 700_000); // the device's DMA round trip
    this.vfioUnmap(sess, m);
  }

  /** vfio_unmap_unpin: per contiguous chunk, or 4K at a time stepping by what came back. */
  private vfioUnmap(sess: Session, m: VfioMapping): void {
    const stepping = this.domains[sess.domain]!.stepping === true;
    const end = m.iova + m.size;
    for (let iova = m.iova; iova < end;) {
      let len = K4;
      if (!stepping) {
        const ch = m.chunks.find((c) => c.iova <= iova && iova < c.iova + c.size)!;
        len = ch.iova + ch.size - iova;
      }
      this.now += 1_000 + (mix(m.op, Number(iova >> 12n)) % 9_000);
      const u = this.emitUnmap(sess.domain, iova, len, sess.task, sess.cpu, '.....', m.op);
      if (u.unmapped === 0n) break; // WARN_ON(!unmapped)
      iova += u.unmapped;
    }
  }

  private vfioClose(s: Step): void {
    const sess = this.session!;
    if (this.opts.faults) {
      // vfio-dma's last DMA goes to an IOVA it never mapped.
      this.emitFault(sess.domain, 0x0ff00000n, 'never-mapped', undefined, s.c, sess.op);
      this.now += 100_000 + (mix(s.a, 4) % 900_000);
    }
    // vfio_iommu_type1_detach_group: iommu_detach_group re-attaches the default domain first,
    // then vfio_iommu_unmap_unpin_all unmaps what the container still holds.
    this.emitAttach(this.eduDomain!, EDU.device, sess.task, sess.cpu, sess.op);
    for (const m of sess.mappings) this.vfioUnmap(sess, m);
    this.session = undefined;
  }
}

/** A byte offset inside a mapping for a fault address (cache-line aligned). */
function faultOffset(size: bigint, sel: number): bigint {
  return (BigInt(mix(sel, 5)) % (size / 64n)) * 64n;
}

export function buildTruth(recipe: Recipe, opts: ResolvedOptions): Truth {
  return new WorkloadBuilder(recipe, opts).build();
}
