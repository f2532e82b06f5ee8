/**
 * The route stage: which address space each record belongs to, decided from the evidence the
 * trace holds, and what must be inferred for the kernel's report to hold.
 *
 * Lines carry no domain. Evidence, strongest first:
 * - The kernel's own report. An unmap's unmapped_size says how many bytes its domain had mapped
 *   there (core/observed.ts): the unmap goes to a space where the profile predicts exactly that,
 *   preferring one where it mirrors whole maps. If none does, a map printed just after it (within
 *   the window) that fills the gap happened before it (a same-timestamp tie, or clock skew
 *   between CPUs), and is moved in front; else, a gap the trace never touched in that space was
 *   mapped before the trace began (a trace that starts mid-stream), and that mapping is stored,
 *   marked as inferred; else the unmap diverges, and the ledger follows the kernel.
 * - Collisions. A domain never maps a live IOVA again: a map goes to a space where its range is
 *   free; when none is, an unmap printed just after it that frees the range is moved in front;
 *   only then is a new space opened.
 * - Scatter-gather lists. iommu_map_sg() issues one map per physically contiguous run of one
 *   IOVA allocation: consecutive maps of one task on one CPU with ascending, contiguous IOVAs are
 *   one allocation, placed together (its single unmap later removes them all at once).
 * - Devices. A fault goes to the space its device was seen in, else where its IOVA was last
 *   removed (a use after unmap), else where it is mapped. An attach goes to the space of the next
 *   map of the same task (VFIO attaches, then maps); attaches no map of theirs follows go to the
 *   device's earlier space, else the first one. Every attach is stored, also a device's second
 *   (a runtime domain switch).
 *
 * Decisions use the spaces' shadows only (spaces.ts), so they depend on the trace alone.
 */
import type { Domain } from '../core/domain.js';
import { kernelRange } from '../core/observed.js';
import type { TraceRecord } from './parse.js';
import { type Space, Spaces } from './spaces.js';
import { type Held, Window } from './window.js';

export interface RouteOptions {
  /** Every record to this one domain (--domain). */
  domain?: string;
  /** `dev`: a map or unmap naming dev=NAME goes to domain NAME. */
  domainBy?: 'infer' | 'dev';
  /** How far apart (ns) records of different CPUs may be printed out of order. */
  skewNs: bigint;
}

export interface RouteCounts {
  /** Records moved before one printed earlier, on the kernel's evidence. */
  reordered: number;
  /** Mappings inferred to have existed before the trace began, and their bytes. */
  beforeTrace: number;
  beforeTraceBytes: bigint;
  /** Unmaps whose unmapped_size no space could explain (divergences from the profile). */
  unexplained: number;
  /** Of those, unmaps that found nothing mapped in any space. */
  nothingMapped: number;
}

/** An unmap's fit in one space: lower rank is better evidence. */
interface Fit {
  space: Space | undefined;
  rank: number;
  /** Maps from the window to move before the unmap (rank 2). */
  pull?: Held[];
  /** Ranges to infer as mapped before the trace (rank 3). */
  infer?: Array<{ start: bigint; end: bigint }>;
  /** For divergences: bytes of the kernel's range mapped in the space. */
  mapped?: bigint;
}

/** At most this many maps make one scatter-gather list (a bound on what is held). */
const SG_MAX = 65536;
/** Consecutive maps of one scatter-gather list are printed at most this far apart (ns). */
const SG_GAP_NS = 200_000n;
/** Attaches no map of their task claims are placed after this much trace time (ns). */
const ATTACH_HORIZON = 1_000_000_000n;

export class Router {
  readonly counts: RouteCounts = { reordered: 0, beforeTrace: 0, beforeTraceBytes: 0n, unexplained: 0, nothingMapped: 0 };
  private readonly window: Window;
  private readonly byDevice = new Map<string, Space>();
  /** Attaches waiting for their task's next map, in order. */
  private pendingAttach: Held[] = [];
  /** Where each task's (CPU:pid) last map went and where it ended. */
  private readonly tails = new Map<string, { end: bigint; space: Space }>();
  /** The scatter-gather scan of the map first in the window (sgScan). */
  private scan: { head: Held; group: Held[]; end: bigint; lastTs: bigint; seen: number; closed: boolean } | undefined;

  constructor(
    private readonly spaces: Spaces,
    private readonly opts: RouteOptions,
  ) {
    this.window = new Window(opts.skewNs);
  }

  /** Takes the next record (in printed order) and decides every record that is due. */
  push(rec: TraceRecord, line: number): void {
    if (rec.timestampNs === undefined) this.drain(true);
    this.window.push({ rec, line });
    this.drain(rec.timestampNs === undefined);
  }

  /** End of input (or of what a follow has read for now): decides every held record. */
  flush(): void {
    this.drain(true);
    this.placeAttaches(undefined, true);
  }

  private drain(all: boolean): void {
    for (let h = this.window.due(all); h; h = this.window.due(all)) {
      // A map waits until its scatter-gather list is complete: the list goes to one space.
      if (!all && (h.rec.event === 'map' || h.rec.event === 'debug_map') && !this.sgScan(h).closed) return;
      this.decide(h);
    }
  }

  private fixedSpace(rec: TraceRecord, line: number): Space | undefined {
    if (this.opts.domain !== undefined) return this.spaces.open(line, this.opts.domain);
    if (this.opts.domainBy === 'dev' && rec.dev) return this.spaces.open(line, devDomain(rec.dev));
    return undefined;
  }

  private decide(h: Held): void {
    this.window.take(h);
    const { rec, line } = h;
    switch (rec.event) {
      case 'map':
      case 'debug_map':
        this.decideMap(h);
        return;
      case 'unmap':
      case 'debug_unmap':
        this.decideUnmap(h);
        return;
      case 'io_page_fault':
        this.decideFault(rec, line);
        return;
      case 'attach':
      case 'add_to_group': {
        const f = this.opts.domain !== undefined ? this.spaces.open(line, this.opts.domain) : undefined;
        if (f) this.attach(f, h);
        else this.pendingAttach.push(h);
        this.placeAttaches(rec.timestampNs, false);
        return;
      }
      case 'detach':
      case 'remove_from_group': {
        const dev = rec.device!;
        // A detach ends what was attached before it: a waiting attach of the device is placed first.
        if (this.pendingAttach.some((p) => p.rec.device === dev)) this.placeAttaches(undefined, true, dev);
        const s = this.byDevice.get(dev) ?? (this.opts.domain !== undefined ? this.spaces.open(line, this.opts.domain) : undefined);
        if (!s) return;
        this.byDevice.delete(dev);
        this.spaces.device('detach', s, rec, line);
        return;
      }
      default:
        return;
    }
  }

  // ---- maps ----

  private decideMap(h: Held): void {
    const { rec, line } = h;
    const group = this.sgScan(h).group;
    const fixed = this.fixedSpace(rec, line);
    const start = rec.iova!;
    const last = group[group.length - 1]!.rec;
    const end = last.iova! + last.size!;
    let s: Space;
    if (fixed) {
      // One domain: a tie can still be put back in order inside it.
      if (mappedIn(fixed.core, start, end)) this.freeByPulling(h, start, end, [fixed]);
      s = fixed;
    } else {
      // A list cut in two (too long a pause inside it) goes on where its first part went.
      const t = rec.cpu !== undefined && rec.pid !== undefined ? this.tails.get(`${rec.cpu}:${rec.pid}`) : undefined;
      const cont = t && t.end === start && !mappedIn(t.space.core, start, end) ? t.space : undefined;
      s = cont ?? this.freeSpace(start, end) ?? this.freeByPulling(h, start, end, this.spaces.list) ?? this.spaces.open(line);
    }
    if (rec.cpu !== undefined && rec.pid !== undefined) this.tails.set(`${rec.cpu}:${rec.pid}`, { end, space: s });
    for (const g of group) {
      if (g !== h) this.window.take(g);
      this.placeAttaches(undefined, false, undefined, g.rec.pid, s);
      this.spaces.map(s, g.rec, g.line);
    }
  }

  /**
   * The map and the maps after it that continue its scatter-gather list: same CPU and task, each
   * starting where the previous one ended, printed at most SG_GAP_NS apart, with nothing else of
   * that CPU in between. `closed` once something shows the list has ended (another record of
   * that CPU, or a record printed SG_GAP_NS after its last map).
   */
  private sgScan(h: Held): { group: Held[]; closed: boolean } {
    const { rec } = h;
    if (rec.cpu === undefined || rec.pid === undefined || rec.timestampNs === undefined || this.opts.domainBy === 'dev') return { group: [h], closed: true };
    // The scan of a list still growing goes on from where it stopped (drain asks again after each record).
    let sc = this.scan;
    if (sc?.head !== h) sc = this.scan = { head: h, group: [h], end: rec.iova! + rec.size!, lastTs: rec.timestampNs, seen: h.seq!, closed: false };
    if (sc.closed) return sc;
    for (const x of this.window.following(h)) {
      if (x.seq! <= sc.seen) continue;
      sc.seen = x.seq!;
      const t = x.rec.timestampNs;
      if (t === undefined || t > sc.lastTs + SG_GAP_NS) {
        sc.closed = true;
        return sc;
      }
      if (x.rec.cpu !== rec.cpu) continue;
      if ((x.rec.event !== 'map' && x.rec.event !== 'debug_map') || x.rec.pid !== rec.pid || x.rec.iova !== sc.end) {
        sc.closed = true;
        return sc;
      }
      sc.group.push(x);
      sc.end = x.rec.iova! + x.rec.size!;
      sc.lastTs = t;
      if (sc.group.length >= SG_MAX) {
        sc.closed = true;
        return sc;
      }
    }
    const latest = this.window.latestNs;
    sc.closed = latest !== undefined && latest > sc.lastTs + SG_GAP_NS;
    return sc;
  }

  /** The first space where nothing in [start, end) is mapped. */
  private freeSpace(start: bigint, end: bigint): Space | undefined {
    for (const s of this.spaces.list) if (!mappedIn(s.core, start, end)) return s;
    return undefined;
  }

  /**
   * A space freed for [start, end) by unmaps printed just after the map (within the window): the
   * kernel mapped the range again after it was unmapped, but the two CPUs printed them the other
   * way round. The unmaps are decided first.
   */
  private freeByPulling(h: Held, start: bigint, end: bigint, among: readonly Space[]): Space | undefined {
    const later = this.earlier(h, (x) => x.rec.event === 'unmap' || x.rec.event === 'debug_unmap');
    if (!later.length) return undefined;
    for (const s of among) {
      const freeing: Held[] = [];
      let ok = true;
      for (const r of s.core.runsIn(start, end)) {
        const rs = r.iova;
        const re = r.iova + r.pageSize * r.count;
        const u = later.find((x) => {
          const k = x.rec.unmappedSize !== undefined ? kernelRange(x.rec.iova!, x.rec.size ?? 0n, x.rec.unmappedSize) : { start: x.rec.iova!, end: x.rec.iova! + (x.rec.size ?? 0n) };
          return k.start <= (rs > start ? rs : start) && k.end >= (re < end ? re : end);
        });
        if (!u) {
          ok = false;
          break;
        }
        if (!freeing.includes(u)) freeing.push(u);
      }
      if (!ok || !freeing.length) continue;
      for (const u of freeing) {
        this.counts.reordered++;
        this.decide(u);
      }
      if (!mappedIn(s.core, start, end)) return s;
    }
    return undefined;
  }

  /**
   * Records printed after `h`, within the window, that `want` picks and that may have happened
   * before it: from another CPU, with no record of their own CPU left between them and `h` (one
   * CPU's records are in order: they come from one ring buffer). Without CPU numbers (the kernel
   * log), only records with the very same timestamp.
   */
  private earlier(h: Held, want: (x: Held) => boolean): Held[] {
    const out: Held[] = [];
    const blocked = new Set<number>();
    const cpu = h.rec.cpu;
    for (const x of this.window.after(h)) {
      const xc = x.rec.cpu;
      const movable = xc !== undefined && cpu !== undefined ? xc !== cpu && !blocked.has(xc) : x.rec.timestampNs === h.rec.timestampNs;
      if (movable && want(x)) {
        out.push(x);
        continue;
      }
      if (xc !== undefined) blocked.add(xc);
    }
    return out;
  }

  // ---- unmaps ----

  private decideUnmap(h: Held): void {
    const { rec, line } = h;
    const fixed = this.fixedSpace(rec, line);
    const candidates = fixed ? [fixed] : this.spaces.list;
    let best: Fit | undefined;
    for (const s of candidates) {
      const f = this.fit(s, h);
      if (!best || f.rank < best.rank || (f.rank === 4 && best.rank === 4 && f.mapped! > best.mapped!)) best = f;
      if (best.rank === 0) break;
    }
    if (!fixed && (!best || best.rank > 3)) {
      // A new space, with what the kernel removed mapped before the trace.
      const f = this.fitNew(h);
      if (f && (!best || f.rank < best.rank)) best = f;
    }
    let s = best?.space;
    if (!s) s = fixed ?? this.spaces.list[0] ?? this.spaces.open(line);
    if (best?.pull) {
      for (const m of best.pull) {
        this.window.take(m);
        this.counts.reordered++;
        this.placeAttaches(undefined, false, undefined, m.rec.pid, s);
        this.spaces.map(s, m.rec, m.line);
      }
    }
    if (best?.infer) {
      let k = 0;
      for (const r of best.infer) {
        this.spaces.mapBeforeTrace(s, r.start, r.end - r.start, line, k++);
        this.counts.beforeTrace++;
        this.counts.beforeTraceBytes += r.end - r.start;
      }
    }
    if ((!best || best.rank === 4) && rec.unmappedSize !== undefined && rec.unmappedSize > 0n) {
      this.counts.unexplained++;
      if (!best || best.mapped === 0n) this.counts.nothingMapped++;
    }
    this.spaces.unmap(s, rec, line);
  }

  /** How well an unmap fits a space (see Fit); `space` undefined stands for a new, empty one. */
  private fit(s: Space, h: Held): Fit {
    const { rec } = h;
    const iova = rec.iova!;
    const size = rec.size ?? 0n;
    const observed = rec.unmappedSize;
    const core = s.core;
    const predicted = core.predictUnmap({ iova, size });
    if (observed === undefined) return { space: s, rank: predicted > 0n ? 1 : 4, mapped: predicted };
    if (predicted === observed) return { space: s, rank: mirrorsMaps(core, iova, size) ? 0 : 1 };
    const k = kernelRange(iova, size, observed);
    if (observed > predicted && k.end > k.start) {
      // Maps printed just after it, inside what the kernel removed and where nothing is mapped.
      const pull = this.earlier(
        h,
        (x) => (x.rec.event === 'map' || x.rec.event === 'debug_map') && x.rec.iova! >= k.start && x.rec.iova! + x.rec.size! <= k.end && !mappedIn(core, x.rec.iova!, x.rec.iova! + x.rec.size!),
      );
      if (pull.length) {
        const trial = core.clone();
        const ok = pull.filter((x) => trial.map({ iova: x.rec.iova!, paddr: x.rec.paddr!, size: x.rec.size!, ref: 0 }).ok);
        if (ok.length && trial.predictUnmap({ iova, size }) === observed) return { space: s, rank: 2, pull: ok };
      }
      // Gaps the trace never touched in this space: mapped before the trace began.
      const gaps = holes(core, k.start, k.end);
      if (gaps.length && !gaps.some((g) => s.touched.touches(g.start, g.end))) {
        const trial = core.clone();
        if (gaps.every((g) => trial.map({ iova: g.start, paddr: g.start, size: g.end - g.start, ref: 0 }).ok) && trial.predictUnmap({ iova, size }) === observed) {
          return { space: s, rank: 3, infer: gaps };
        }
      }
    }
    return { space: s, rank: 4, mapped: mappedBytes(core, k.start, k.end) };
  }

  /** An unmap in a new space, where what the kernel removed had been mapped before the trace. */
  private fitNew(h: Held): Fit | undefined {
    const { rec } = h;
    const observed = rec.unmappedSize;
    if (observed === undefined || observed === 0n || this.opts.domainBy === 'dev') return undefined;
    const iova = rec.iova!;
    const size = rec.size ?? 0n;
    const k = kernelRange(iova, size, observed);
    const line = h.line;
    // Opened only if the fit holds: try it on a scratch domain of the profile first.
    const probe = this.spaces.scratch();
    if (!probe.map({ iova: k.start, paddr: k.start, size: k.end - k.start, ref: 0 }).ok || probe.predictUnmap({ iova, size }) !== observed) return undefined;
    const s = this.spaces.open(line);
    return { space: s, rank: 3, infer: [k] };
  }

  // ---- faults and devices ----

  private decideFault(rec: TraceRecord, line: number): void {
    let s = this.fixedSpace(rec, line) ?? (rec.device ? this.byDevice.get(rec.device) : undefined);
    if (!s) {
      const iova = rec.iova!;
      let bestSeq = -1;
      for (const sp of this.spaces.list) {
        const seq = this.spaces.lastRemoval(sp, iova);
        if (seq !== undefined && seq > bestSeq && !sp.core.find(iova)) {
          bestSeq = seq;
          s = sp;
        }
      }
      s ??= this.spaces.list.find((sp) => sp.core.find(iova) !== undefined);
    }
    s ??= this.spaces.list[0] ?? this.spaces.open(line);
    if (rec.device && !this.byDevice.has(rec.device)) this.byDevice.set(rec.device, s);
    this.spaces.fault(s, rec, line);
  }

  private attach(s: Space, h: Held): void {
    this.byDevice.set(h.rec.device!, s);
    this.spaces.device('attach', s, h.rec, h.line);
  }

  /**
   * Places waiting attaches: those of task `pid` in space `to` (its map just went there); with
   * `all`, every one (or those of `device`) in its device's earlier space, else the first; and
   * any that waited longer than the horizon before `now`.
   */
  private placeAttaches(now: bigint | undefined, all: boolean, device?: string, pid?: number, to?: Space): void {
    if (!this.pendingAttach.length) return;
    const keep: Held[] = [];
    for (const p of this.pendingAttach) {
      const r = p.rec;
      if (to && (pid === undefined || r.pid === undefined || r.pid === pid)) {
        this.attach(to, p);
        continue;
      }
      const old = now !== undefined && r.timestampNs !== undefined && now - r.timestampNs > ATTACH_HORIZON;
      if ((all && (device === undefined || r.device === device)) || old) {
        this.attach(this.byDevice.get(r.device!) ?? this.spaces.list[0] ?? this.spaces.open(p.line), p);
        continue;
      }
      keep.push(p);
    }
    this.pendingAttach = keep;
  }
}

/** Is anything mapped in [start, end)? */
function mappedIn(core: Domain, start: bigint, end: bigint): boolean {
  return core.runsIn(start, end).length > 0;
}

function mappedBytes(core: Domain, start: bigint, end: bigint): bigint {
  return core.mappedIn({ start, end }).reduce((a, r) => a + (r.end - r.start), 0n);
}

/** The unmapped parts of [start, end). */
function holes(core: Domain, start: bigint, end: bigint): Array<{ start: bigint; end: bigint }> {
  const out: Array<{ start: bigint; end: bigint }> = [];
  let cur = start;
  for (const r of core.mappedIn({ start, end })) {
    if (r.start > cur) out.push({ start: cur, end: r.start });
    cur = r.end;
  }
  if (cur < end) out.push({ start: cur, end });
  return out;
}

/** Does [iova, iova+size) cover whole maps only, from edge to edge (the 2011 rule)? */
function mirrorsMaps(core: Domain, iova: bigint, size: bigint): boolean {
  const end = iova + size;
  const runs = core.runsIn(iova, end);
  if (!runs.length) return size === 0n;
  for (const r of runs) if (r.origin.iova < iova || r.origin.iova + r.origin.size > end) return false;
  return runs[0]!.origin.iova === iova && runs[runs.length - 1]!.origin.iova + runs[runs.length - 1]!.origin.size === end;
}

/** A `dev=` name as a domain name (no spaces, at most 200 characters). */
export function devDomain(dev: string): string {
  return dev.replace(/\s+/g, '_').slice(0, 200) || 'dev';
}
