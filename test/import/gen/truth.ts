/**
 * What the trace generator knows and the trace does not say: the truth behind a generated
 * Linux 6.1 ftrace trace of the iommu events. Types, options and the recipe (the small integer
 * choices a truth is built from). The builder is workload.ts, the printer render.ts, the
 * oracle oracle.ts; arbitrary.ts ties them into a fast-check Arbitrary.
 */
import { findBuiltinProfile, minPageSize } from '../../../src/core/profile.js';

// ---------------------------------------------------------------------------------------------
// Options

export interface TraceOptions {
  /**
   * Candidate hardware profiles (built-in names, legacy or split unmap behaviour, 4 KiB smallest
   * page). One is chosen per trace (or per domain with `mixedProfiles`). Default: intel-vtd,
   * amd-v1, arm-lpae-4k.
   */
  profiles?: readonly string[];
  /** Each domain draws its own profile (default false: one machine, one IOMMU driver). */
  mixedProfiles?: boolean;
  /**
   * Records of different CPUs that print the same microsecond come out in an order the recipe
   * chooses (true order, adversarial = reverse of the true order, by CPU number up or down)
   * instead of their clocks' order (default true).
   */
  ties?: boolean;
  /** Each CPU's trace clock is ahead of the true time by 0..skewUs µs (default 0). */
  skewUs?: number;
  /** The trace may start at a cut time: what happened before is not printed (default true). */
  preTrace?: boolean;
  /** Several DMA domains (up to 4; a number caps it; default true = 4). false: one. */
  multiDomain?: boolean | number;
  /** A VFIO task re-attaches a device to new domains at run time, maps and unmaps (default true). */
  vfio?: boolean;
  /**
   * How VFIO unmaps (vfio_unmap_unpin): `true`/'auto' as the kernel does, 4 KiB at a time stepping
   * by the returned size when the domain's fgsp test says large pages are fine grained (amd-v1),
   * else one contiguous chunk at a time; 'force': step on every legacy profile; false/'off':
   * never step. Default 'auto'.
   */
  vfioStepping?: boolean | 'auto' | 'force' | 'off';
  /** 2 MiB physically contiguous chunks (large SG segments, THP-backed VFIO buffers) (default true). */
  largePages?: boolean;
  /** io_page_fault records (default true). */
  faults?: boolean;
  /** add_device_to_group records at boot, before each attach (default false). */
  groups?: boolean;
  /** Intel's floppy workaround: a 16 MiB 1:1 map at IOVA 0 in the LPC bridge's domain (default false). */
  floppy?: boolean;
  /** Some task names print as `<...>` (ftrace's saved_cmdlines lost them) (default false). */
  lostComms?: boolean;
  /** At least this many printed records, when maxRecords allows (default 10). */
  minRecords?: number;
  /** At most this many events in the truth, pre-trace included (default 200). */
  maxRecords?: number;
  /** Steps in a generated recipe (default 4..60). */
  minSteps?: number;
  maxSteps?: number;
}

export interface ResolvedOptions {
  profiles: string[];
  mixedProfiles: boolean;
  ties: boolean;
  skewUs: number;
  preTrace: boolean;
  maxDomains: number;
  vfio: boolean;
  vfioStepping: 'auto' | 'force' | 'off';
  largePages: boolean;
  faults: boolean;
  groups: boolean;
  floppy: boolean;
  lostComms: boolean;
  minRecords: number;
  maxRecords: number;
  minSteps: number;
  maxSteps: number;
}

export const DEFAULT_PROFILES: readonly string[] = ['intel-vtd', 'amd-v1', 'arm-lpae-4k'];

export function resolveOptions(o: TraceOptions = {}): ResolvedOptions {
  const profiles = [...(o.profiles ?? DEFAULT_PROFILES)];
  if (profiles.length === 0) throw new Error('trace generator: profiles is empty');
  for (const name of profiles) {
    const p = findBuiltinProfile(name);
    if (!p) throw new Error(`trace generator: unknown profile ${JSON.stringify(name)}`);
    if (p.semantics === 'strict') throw new Error(`trace generator: ${name} is strict (an ioctl's behaviour, never iommu_unmap's)`);
    if (minPageSize(p.pgsizeBitmap) !== 4096n) throw new Error(`trace generator: ${name} has no 4 KiB pages (iommu-dma's granule is modelled as 4 KiB)`);
  }
  const md = o.multiDomain ?? true;
  const maxDomains = md === true ? 4 : md === false ? 1 : Math.max(1, Math.min(4, Math.floor(md)));
  const st = o.vfioStepping ?? 'auto';
  const vfioStepping = st === true ? 'auto' : st === false ? 'off' : st;
  const skewUs = o.skewUs ?? 0;
  if (!(skewUs >= 0 && Number.isInteger(skewUs))) throw new Error('trace generator: skewUs must be an integer >= 0');
  return {
    profiles,
    mixedProfiles: o.mixedProfiles ?? false,
    ties: o.ties ?? true,
    skewUs,
    preTrace: o.preTrace ?? true,
    maxDomains,
    vfio: o.vfio ?? true,
    vfioStepping,
    largePages: o.largePages ?? true,
    faults: o.faults ?? true,
    groups: o.groups ?? false,
    floppy: o.floppy ?? false,
    lostComms: o.lostComms ?? false,
    minRecords: o.minRecords ?? 10,
    maxRecords: o.maxRecords ?? 200,
    minSteps: o.minSteps ?? 4,
    maxSteps: o.maxSteps ?? 60,
  };
}

// ---------------------------------------------------------------------------------------------
// The recipe: small integers only, any values valid (out-of-range ones are taken modulo), so
// that fast-check can shrink it freely and every shrunk recipe still builds a valid truth.

/** One step of the workload; `op` picks what happens (workload.ts STEP_KINDS), a/b/c/g refine it. */
export interface Step {
  op: number;
  a: number;
  b: number;
  c: number;
  /** The gap before the step (class g % 10, magnitude g / 10). */
  g: number;
}

export interface Recipe {
  /** DMA domains: 1 + domains % maxDomains. */
  domains: number;
  /** CPUs: 2 + cpus % 3. */
  cpus: number;
  /** Index into the profile list (the trace's profile, or the first domain's when mixed). */
  profile: number;
  /** Per DMA domain, with mixedProfiles: index into the profile list. */
  domainProfiles: number[];
  /** Per DMA domain: its DMA limit (0: 32-bit, the usual; 3: 39-bit; 4: 48-bit). */
  limits: number[];
  /** Per CPU: its trace clock's offset in ns (modulo skewUs * 1000 + 1). */
  skewNs: number[];
  /** 0: no cut. Else tracing starts after the boot events plus cut/1000 × 70% of the workload's events. */
  cut: number;
  /** Per same-µs group of records from several CPUs: how it is ordered (0 clock, 1 adversarial, 2 CPU up, 3 CPU down). */
  tieModes: number[];
  /** Per DMA domain: coherent (queue) allocations its driver makes at probe. */
  probe: number[];
  steps: Step[];
}

// ---------------------------------------------------------------------------------------------
// The truth

export interface Task {
  comm: string;
  pid: number;
}

export type DomainRole =
  /** An iommu-dma default domain with its own IOVA allocator. */
  | 'dma'
  /** The LPC bridge's domain holding Intel's 16 MiB floppy 1:1 map. */
  | 'direct'
  /** The default domain of the device VFIO takes over; nothing is mapped in it. */
  | 'idle'
  /** An unmanaged domain of a VFIO container (one per session). */
  | 'vfio';

export interface TruthDomain {
  id: number;
  /** dma0.., floppy, edu, vfio0..: names for messages only (the trace names no domain). */
  name: string;
  role: DomainRole;
  /** The built-in profile whose Domain decides every unmapped_size here. */
  profile: string;
  /** The PCI device attached when the domain was created. */
  device: string;
  /** Its driver, as io_page_fault prints it. */
  driver: string;
  /** role 'dma': the DMA limit (exclusive) its allocator works below. */
  limit?: bigint;
  /** role 'vfio': the result of vfio_test_domain_fgsp (a 4K unmap of an 8K map removed more). */
  fgsp?: boolean;
  /** role 'vfio': whether this session's unmaps step 4K at a time by the returned size. */
  stepping?: boolean;
}

/** What one unmap removed from one map record (bytes that were that map's and are no more). */
export interface Removal {
  /** seq of the map event. */
  map: number;
  start: bigint;
  end: bigint;
}

export type FaultCause = 'after-unmap' | 'live' | 'never-mapped';

interface EventBase {
  /** Position in the true order (index in Truth.events). */
  seq: number;
  /** True global time, ns. Strictly increasing with seq. */
  tNs: number;
  cpu: number;
  comm: string;
  pid: number;
  /** The 5 irq-info characters (irqs-off, need-resched, hardirq/softirq, preempt, migrate). */
  flags: string;
  /** The domain the record belongs to (for attach: the domain the device joins). */
  domain: number;
  /** False for events before the cut (never printed). */
  printed: boolean;
  /** The operation (one DMA mapping, one VFIO mapping, a session, boot) the event belongs to. */
  op: number;
}

export interface MapEvent extends EventBase {
  kind: 'map';
  iova: bigint;
  size: bigint;
  paddr: bigint;
}

export interface UnmapEvent extends EventBase {
  kind: 'unmap';
  iova: bigint;
  size: bigint;
  /** What the domain's profile (core Domain.unmap) reports: the trace's unmapped_size. */
  unmapped: bigint;
  removes: Removal[];
}

export interface FaultEvent extends EventBase {
  kind: 'fault';
  iova: bigint;
  device: string;
  driver: string;
  faultFlags: number;
  cause: FaultCause;
  /** seq of the unmap (after-unmap) or map (live) the fault is about. */
  about?: number;
}

export interface AttachEvent extends EventBase {
  kind: 'attach';
  device: string;
}

export interface GroupEvent extends EventBase {
  kind: 'group';
  device: string;
  groupId: number;
}

export type TruthEvent = MapEvent | UnmapEvent | FaultEvent | AttachEvent | GroupEvent;

export interface Truth {
  recipe: Recipe;
  options: ResolvedOptions;
  cpus: number;
  /** Per CPU: trace clock = true time + skewNs[cpu]. */
  skewNs: number[];
  /** Events with tNs < cutNs are not printed; undefined: no cut. */
  cutNs?: number;
  /** Number of events before the cut (they are events[0 .. preTraceCount-1]). */
  preTraceCount: number;
  domains: TruthDomain[];
  /** In true order. */
  events: TruthEvent[];
}
