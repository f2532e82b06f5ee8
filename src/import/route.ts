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
  /** The space; undefined with `fresh`: a new one, opened when the fit is applied. */
  space: Space | undefined;
  fresh?: true;
  rank: number;
  /** Scatter-gather lists from the window to move before the unmap, with their escorts (rank 2). */
  pull?: Array<{ x: Held; escorts: Held[]; group: Held[] }>;
  /** Ranges to infer as mapped before the trace (rank 3). */
  infer?: Array<{ start: bigint; end: bigint }>;
  /** For divergences: bytes of the kernel's range mapped in the space. */
  mapped?: bigint;
  /** Bytes inferred as mapped before the trace (rank 3): fewer is the better explanation. */
  inferred?: bigint;
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
  /** The space of each task's (pid's) last map. */
  private readonly taskSpace = new Map<number, Space>();
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

  /** Decides every held record (a pause of a stream). */
  drainAll(): void {
    this.drain(true);
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
    h.decided = true;
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
      // A task's maps stay together where they can (a VFIO task's all belong to its container's
      // domain): its last space first, when the range is free there.
      const mine = rec.pid ? this.taskSpace.get(rec.pid) : undefined;
      const own = mine && !mappedIn(mine.core, start, end) ? mine : undefined;
      s = cont ?? own ?? this.freeSpace(start, end) ?? this.freeByPulling(h, start, end, this.spaces.list) ?? this.spaces.open(line);
    }
    if (rec.cpu !== undefined && rec.pid !== undefined) this.tails.set(`${rec.cpu}:${rec.pid}`, { end, space: s });
    if (rec.pid) this.taskSpace.set(rec.pid, s);
    this.spaces.allocated(s, start, end);
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
      if (
        (x.rec.event !== 'map' && x.rec.event !== 'debug_map') ||
        x.rec.pid !== rec.pid ||
        x.rec.iova !== sc.end ||
        !oneAllocation(rec.iova!, x.rec.iova! + x.rec.size!)
      ) {
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

  /** The scatter-gather list that starts with `x` (sgScan's rules, without waiting for it to close). */
  private sgGroupOf(x: Held): Held[] {
    const group = [x];
    const { rec } = x;
    if (rec.cpu === undefined || rec.pid === undefined || rec.timestampNs === undefined) return group;
    let end = rec.iova! + rec.size!;
    let lastTs = rec.timestampNs;
    for (const y of this.window.following(x)) {
      const t = y.rec.timestampNs;
      if (t === undefined || t > lastTs + SG_GAP_NS) break;
      if (y.rec.cpu !== rec.cpu) continue;
      if (!isMap(y) || y.rec.pid !== rec.pid || y.rec.iova !== end || !oneAllocation(rec.iova!, y.rec.iova! + y.rec.size!)) break;
      group.push(y);
      end = y.rec.iova! + y.rec.size!;
      lastTs = t;
    }
    return group;
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
    const later = this.earlier(h, (x) => x.rec.event === 'unmap' || x.rec.event === 'debug_unmap', { start, end });
    if (!later.length) return undefined;
    for (const s of among) {
      const freeing: Array<{ u: Held; escorts: Held[]; fit: Fit }> = [];
      let ok = true;
      for (const r of s.core.runsIn(start, end)) {
        const rs = r.iova > start ? r.iova : start;
        const re0 = r.iova + r.pageSize * r.count;
        const re = re0 < end ? re0 : end;
        // An unmap that removes this part, that would go to this very space, and that its
        // escorts leave as it is.
        let found: { u: Held; escorts: Held[]; fit: Fit } | undefined;
        for (const { x: u, escorts } of later) {
          const k = reach(u.rec);
          if (k.start > rs || k.end < re || escorts.some((e) => touches(e.rec, k))) continue;
          const fit = this.chooseUnmap(u);
          if (fit?.space === s && fit.rank <= 0.25) {
            found = { u, escorts, fit };
            break;
          }
        }
        if (!found) {
          ok = false;
          break;
        }
        if (!freeing.some((f) => f.u === found!.u)) freeing.push(found);
      }
      if (!ok || !freeing.length) continue;
      for (const f of freeing) {
        if (f.u.decided) continue;
        this.escort(f.escorts);
        this.counts.reordered++;
        f.u.decided = true;
        this.window.take(f.u);
        this.applyUnmap(f.u, f.fit);
      }
      if (!mappedIn(s.core, start, end)) return s;
    }
    return undefined;
  }

  /**
   * Records printed after `h`, within the window, that `want` picks and that may have happened
   * before it: from another CPU (one CPU's records are in order: they come from one ring
   * buffer). The records of that CPU printed between `h` and it (its escorts) must then have
   * happened before `h` too; they may, unless one touches `near`, which blocks that CPU. Without
   * CPU numbers (the kernel log), only records with the very same timestamp, without escorts.
   */
  private earlier(h: Held, want: (x: Held) => boolean, near: { start: bigint; end: bigint }): Array<{ x: Held; escorts: Held[] }> {
    const out: Array<{ x: Held; escorts: Held[] }> = [];
    const passed = new Map<number, Held[]>();
    const blocked = new Set<number>();
    const cpu = h.rec.cpu;
    for (const x of this.window.after(h)) {
      const xc = x.rec.cpu;
      if (xc === undefined || cpu === undefined) {
        if (x.rec.timestampNs === h.rec.timestampNs && want(x)) out.push({ x, escorts: [] });
        continue;
      }
      if (xc === cpu || blocked.has(xc)) continue;
      const before = passed.get(xc) ?? [];
      if (want(x)) {
        out.push({ x, escorts: before.slice() });
        continue;
      }
      if (touches(x.rec, near)) blocked.add(xc);
      else passed.set(xc, [...before, x]);
    }
    return out;
  }

  /** Decides, in order, the records that must come before a record moved forward. */
  private escort(escorts: readonly Held[]): void {
    for (const e of escorts) {
      if (e.decided) continue;
      this.counts.reordered++;
      this.decide(e);
    }
  }

  // ---- unmaps ----

  private decideUnmap(h: Held): void {
    this.deferFor(h);
    this.applyUnmap(h, this.chooseUnmap(h));
  }

  /**
   * Two unmaps of one range printed together from two CPUs, and a map of it again after the
   * second on that CPU, while one copy of the range is mapped: the kernel can only have done the
   * other CPU's unmap and map first (the range was freed, and mapped again, before this unmap
   * removed it). Those go first, with what their CPU printed before them.
   */
  private deferFor(h: Held): void {
    const { rec } = h;
    if (rec.cpu === undefined || rec.unmappedSize === undefined || this.opts.domain !== undefined) return;
    const same = (x: Held) => x.rec.iova === rec.iova && x.rec.size === rec.size;
    // Most unmaps have no twin in the window: that is looked at first (cheap).
    let twin = false;
    for (const x of this.window.after(h)) {
      if (x.rec.cpu !== rec.cpu && (x.rec.event === 'unmap' || x.rec.event === 'debug_unmap') && same(x)) {
        twin = true;
        break;
      }
    }
    if (!twin) return;
    const copies = this.spaces.list.filter((s) => s.core.predictUnmap({ iova: rec.iova!, size: rec.size ?? 0n }) === rec.unmappedSize).length;
    if (copies !== 1) return;
    const r = reach(rec);
    for (const { x: u2, escorts } of this.earlier(
      h,
      (x) => (x.rec.event === 'unmap' || x.rec.event === 'debug_unmap') && same(x) && x.rec.unmappedSize === rec.unmappedSize,
      r,
    )) {
      // The map of the range again, on the same CPU, after u2.
      const mid: Held[] = [];
      for (const y of this.window.after(u2)) {
        if (y.rec.cpu !== u2.rec.cpu) continue;
        if (isMap(y) && same(y)) {
          this.escort(escorts);
          if (u2.decided) return;
          u2.decided = true;
          this.window.take(u2);
          this.counts.reordered++;
          this.applyUnmap(u2, this.chooseUnmap(u2));
          this.escort(mid);
          if (!y.decided) {
            this.counts.reordered++;
            this.decide(y);
          }
          return;
        }
        if (touches(y.rec, r)) break;
        mid.push(y);
      }
    }
  }

  /**
   * The best fit of an unmap among the spaces, and a new one (undefined with nothing to go on).
   * Deciding nothing: a new space is opened only when the chosen fit's space is asked for.
   */
  private chooseUnmap(h: Held): Fit | undefined {
    const fixed = this.fixedSpace(h.rec, h.line);
    let best: Fit | undefined;
    for (const s of fixed ? [fixed] : this.spaces.list) {
      // Once a space fits at rank 1 or better, another can only beat it by predicting the report
      // too: the costlier evidence (pulls, inference) is not looked for.
      const f = this.fit(s, h, best !== undefined && best.rank <= 1);
      if (!best || f.rank < best.rank || (f.rank === best.rank && better(f, best))) best = f;
      if (best.rank === 0) break;
    }
    // A new space fits when maps just after it, or a mapping from before the trace, explain the
    // report there; at the same evidence an existing space is preferred.
    if (!fixed && (!best || best.rank >= 2) && this.opts.domainBy !== 'dev') {
      const f = this.fit(undefined, h);
      if (f.rank < 4 && (!best || f.rank < best.rank)) best = f;
    }
    return best;
  }

  private applyUnmap(h: Held, best: Fit | undefined): void {
    const { rec, line } = h;
    const s = best?.fresh ? this.spaces.open(line) : (best?.space ?? this.fixedSpace(rec, line) ?? this.spaces.list[0] ?? this.spaces.open(line));
    if (best?.pull) {
      for (const { group, escorts } of best.pull) {
        if (group.some((m) => m.decided)) continue;
        this.escort(escorts);
        const last = group[group.length - 1]!.rec;
        this.spaces.allocated(s, group[0]!.rec.iova!, last.iova! + last.size!);
        for (const m of group) {
          m.decided = true;
          this.window.take(m);
          this.counts.reordered++;
          this.placeAttaches(undefined, false, undefined, m.rec.pid, s);
          this.spaces.map(s, m.rec, m.line);
        }
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

  /**
   * How well an unmap fits a space (see Fit). Without a space: a new, empty one, which is opened
   * only when chosen (a fit there ranks after the same evidence in an existing space).
   */
  private fit(sp: Space | undefined, h: Held, predictedOnly = false): Fit {
    const { rec } = h;
    const iova = rec.iova!;
    const size = rec.size ?? 0n;
    const observed = rec.unmappedSize;
    const core = sp ? sp.core : this.spaces.scratch();
    const penalty = sp ? 0 : 0.5;
    const fresh = sp ? {} : { fresh: true as const };
    const predicted = core.predictUnmap({ iova, size });
    if (observed === undefined) return { space: sp, rank: predicted > 0n ? 1 : 4, mapped: predicted };
    if (predicted === observed) {
      // Exactly one allocation; else one map (a piece of a scatter-gather list: iommu-dma unmaps
      // whole allocations, so another space where the range is a whole allocation is the better
      // fit); else whole maps only; else it cuts a mapping.
      const rank = !sp ? 1 : this.spaces.isAllocation(sp, iova, iova + size) ? 0 : isOneMap(core, iova, size) ? 0.25 : wholeMaps(core, iova, size) ? 0.5 : 1;
      return { space: sp, rank };
    }
    const k = kernelRange(iova, size, observed);
    if (predictedOnly) return { space: sp, rank: 4, mapped: 0n };
    if (observed > predicted && k.end > k.start) {
      // Maps printed just after it, inside what the kernel removed and where nothing is mapped:
      // whole scatter-gather lists only (a list is one allocation, mapped at once).
      const pull: Array<{ x: Held; escorts: Held[]; group: Held[] }> = [];
      const seen = new Set<Held>();
      for (const p of this.earlier(h, isMap, reach(rec))) {
        if (seen.has(p.x)) continue;
        const group = this.sgGroupOf(p.x);
        for (const m of group) seen.add(m);
        const prev = p.escorts[p.escorts.length - 1];
        // The middle of a list (one not placed yet: a placed list did not take this map).
        if (prev && !prev.decided && isMap(prev) && prev.rec.pid === p.x.rec.pid && prev.rec.iova! + prev.rec.size! === p.x.rec.iova) continue;
        // What of the list lies in the kernel's range: a list that goes on past it is taken as
        // two allocations when the range ends where one of its maps does (the alignment of
        // iommu-dma's allocations makes such a pair look like one list: see oneAllocation).
        const inside: Held[] = [];
        for (const m of group) {
          if (m.rec.iova! < k.start || m.rec.iova! + m.rec.size! > k.end || mappedIn(core, m.rec.iova!, m.rec.iova! + m.rec.size!)) break;
          inside.push(m);
        }
        if (inside.length) pull.push({ ...p, group: inside });
      }
      let pulled: Domain | undefined;
      let ok: typeof pull = [];
      if (pull.length) {
        const trial = core.clone();
        ok = pull.filter((p) => p.group.every((m) => trial.map({ iova: m.rec.iova!, paddr: m.rec.paddr!, size: m.rec.size!, ref: 0 }).ok));
        if (ok.length && trial.predictUnmap({ iova, size }) === observed) return { space: sp, ...fresh, rank: 2 + penalty, pull: ok };
        if (ok.length) pulled = trial;
      }
      // Gaps the trace never touched in this space: mapped before the trace began (after the maps
      // just after it, when those fill some of them: the fewest bytes inferred).
      let best: Fit | undefined;
      for (const [base, withPull] of pulled
        ? ([
            [pulled, ok],
            [core, undefined],
          ] as const)
        : ([[core, undefined]] as const)) {
        const gaps = holes(base, k.start, k.end);
        if (!gaps.length || (sp && gaps.some((g) => sp.touched.touches(g.start, g.end)))) continue;
        const trial = base.clone();
        if (
          !gaps.every((g) => trial.map({ iova: g.start, paddr: g.start, size: g.end - g.start, ref: 0 }).ok) ||
          trial.predictUnmap({ iova, size }) !== observed
        )
          continue;
        const inferred = gaps.reduce((a, g) => a + (g.end - g.start), 0n);
        if (!best || inferred < best.inferred!)
          best = { space: sp, ...fresh, rank: 3 + penalty, infer: gaps, inferred, ...(withPull ? { pull: [...withPull] } : {}) };
      }
      if (best) return best;
    }
    return { space: sp, rank: 4, mapped: mappedBytes(core, k.start, k.end) };
  }

  // ---- faults and devices ----

  private decideFault(rec: TraceRecord, line: number): void {
    let s = this.fixedSpace(rec, line) ?? (rec.device ? this.byDevice.get(rec.device) : undefined);
    // The device's space, unless its IOVA was never there and another space has it (the device
    // was placed by its attach, a weaker clue than the address).
    if (s && !this.opts.domain && !s.core.find(rec.iova!) && this.spaces.lastRemoval(s, rec.iova!) === undefined) {
      if (this.spaces.list.some((sp) => sp.core.find(rec.iova!) || this.spaces.lastRemoval(sp, rec.iova!) !== undefined)) s = undefined;
    }
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

/**
 * Could [start, end) be one IOVA allocation of Linux's iommu-dma? iommu_dma_alloc_iova()
 * (drivers/iommu/dma-iommu.c) asks alloc_iova_fast() for a size-aligned range, and
 * __alloc_and_insert_iova_range() (drivers/iommu/iova.c) aligns it to the size rounded up to a
 * power of two of 4K pages: a scatter-gather list's maps make up one such range.
 */
function oneAllocation(start: bigint, end: bigint): boolean {
  const pages = (end - start + 4095n) >> 12n;
  let p2 = 1n;
  while (p2 < pages) p2 <<= 1n;
  return ((start >> 12n) & (p2 - 1n)) === 0n;
}

function isMap(h: Held): boolean {
  return h.rec.event === 'map' || h.rec.event === 'debug_map';
}

/** The range a record reaches: an unmap's request and what the kernel reports removed; a map's range. */
function reach(rec: TraceRecord): { start: bigint; end: bigint } {
  const start = rec.iova ?? 0n;
  const end = start + (rec.size ?? 0n);
  if (rec.unmappedSize === undefined) return { start, end: end > start ? end : start + 1n };
  const k = kernelRange(start, rec.size ?? 0n, rec.unmappedSize);
  return { start: k.start < start ? k.start : start, end: k.end > end ? k.end : end };
}

/** Does a record's range overlap [start, end)? (Records without an IOVA touch nothing.) */
function touches(rec: TraceRecord, r: { start: bigint; end: bigint }): boolean {
  if (rec.iova === undefined) return false;
  const x = reach(rec);
  return x.start < r.end && x.end > r.start;
}

/** Between fits of equal rank: fewer bytes inferred before the trace; for divergences, more of the kernel's range mapped. */
function better(a: Fit, b: Fit): boolean {
  if (a.inferred !== undefined && b.inferred !== undefined) return a.inferred < b.inferred;
  if (a.mapped !== undefined && b.mapped !== undefined) return a.mapped > b.mapped;
  return false;
}

/** Does [iova, iova+size) hold whole map commands only, from edge to edge (the 2011 rule)? */
function wholeMaps(core: Domain, iova: bigint, size: bigint): boolean {
  const end = iova + size;
  const runs = core.runsIn(iova, end);
  if (!runs.length) return false;
  for (const r of runs) if (r.origin.iova < iova || r.origin.iova + r.origin.size > end) return false;
  return runs[0]!.origin.iova === iova && runs[runs.length - 1]!.origin.iova + runs[runs.length - 1]!.origin.size === end;
}

/** Is [iova, iova+size) exactly one live map command's range? */
function isOneMap(core: Domain, iova: bigint, size: bigint): boolean {
  const o = core.find(iova)?.origin;
  return o !== undefined && o.iova === iova && o.size === size;
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

/** A `dev=` name as a domain name (no spaces, at most 200 characters). */
export function devDomain(dev: string): string {
  return dev.replace(/\s+/g, '_').slice(0, 200) || 'dev';
}
