/**
 * One IOMMU domain's mappings and page tables, and the three unmap behaviours.
 * Pure and in memory: no I/O. docs/semantics.md says which kernel code each part models.
 *
 * Live mappings are kept as runs of equal pages in a B+ tree keyed by IOVA, so map and unmap
 * cost O(log runs + runs touched), never O(pages).
 */
import { coalesceRanges, fls, formatSize, hex, type Range } from './address.js';
import { leafLevelOf, minPageSize, type Profile } from './profile.js';
import { PROT } from './prot.js';
import { kernelRange } from './observed.js';
import { splitRegion, type PageRun } from './split.js';
import { cmpKey, keyOf, type TreeKey } from './treekey.js';
import { BTree } from './btree.js';

export type Errno = 'EINVAL' | 'ERANGE' | 'EEXIST' | 'ENOENT' | 'EOVERFLOW';

/** IOMMU_READ / IOMMU_WRITE / ... (include/linux/iommu.h): see prot.ts. */
export { PROT };

/** Who asked for a map, as the domain's owner records it (the ledger: caller and call site). */
export interface MapAsker {
  readonly caller: string;
  readonly site: string;
}

/** The map command a page came from: its reference (an event position) and its whole region. */
export interface MapOrigin {
  readonly ref: number;
  readonly iova: bigint;
  readonly paddr: bigint;
  readonly size: bigint;
  readonly prot: number;
  /** Who asked, when the command said (MapCommand.by): kept with the pages, never read by the core. */
  readonly by?: MapAsker | undefined;
}

/** Live pages: `count` pages of `pageSize` at iova/paddr, leaves at page-table `level`. */
export interface Run extends PageRun {
  readonly level: number;
  /** Table entries one page occupies (16 for a 64K page in a 4K-entry table, else 1). */
  readonly repeat: number;
  readonly origin: MapOrigin;
  /**
   * Two slots for the domain's owner, which numbers the runs it stores (the ledger: the run's row
   * in the `runs` table, and the event it was born at). The core sets both to 0 when it makes a
   * run and never reads them; the owner sets them once, just after the operation that made it.
   * They save the owner a map from run to number (two objects per live run).
   */
  row: number;
  from: number;
}

/** A removed or collateral range, with the map command that had created it. */
export interface OwnedRange extends Range {
  origin: MapOrigin;
}

/** What one operation did to the page tables. Arrays are indexed by level (0 = root). */
export interface HwDelta {
  entriesWritten: number[];
  entriesCleared: number[];
  tablesAllocated: number[];
  tablesFreed: number[];
  /** IOVA ranges whose IOTLB entries must be invalidated, coalesced. */
  invalidations: Range[];
}

export interface MapCommand {
  iova: bigint;
  paddr: bigint;
  size: bigint;
  prot?: number;
  /** The caller's reference for this command (e.g. its event position). */
  ref: number;
  /** Who asked: kept on the origin of every page this command creates (MapOrigin.by). */
  by?: MapAsker | undefined;
}

/**
 * The runs an operation took out of the tree and put in (for projections that store runs):
 * every run object in `before` is gone, every one in `after` is live.
 */
export interface RunChanges {
  before: Run[];
  after: Run[];
}

export type MapResult = { ok: true; runs: Run[]; hw: HwDelta; changes: RunChanges } | { ok: false; errno: Errno; reason: string };

export interface UnmapCommand {
  iova: bigint;
  size: bigint;
}

export interface UnmapResult {
  ok: boolean;
  errno?: Errno;
  reason?: string;
  requested: Range;
  /** What iommu_unmap() (or the ioctl) reports: bytes unmapped. */
  unmappedSize: bigint;
  /** Pages removed, as runs (with the map command that created them). */
  removed: Run[];
  /** Pages written to keep the rest of a split block mapped (split behaviour only). */
  rewritten: Run[];
  /** Removed but not requested. */
  collateral: OwnedRange[];
  /** Requested but still mapped afterwards. */
  leftMapped: Range[];
  hw: HwDelta;
  changes: RunChanges;
  /**
   * Set by unmapObserved when the kernel's report differed from the profile's prediction: what
   * the profile predicted. The pages then follow the kernel (core/observed.ts).
   */
  predicted?: bigint;
}

export interface WalkStep {
  level: number;
  levelName: string;
  index: number;
  kind: 'table' | 'page' | 'invalid';
  /** For a page: the output address for this IOVA. For a table: nothing (tables are not addressed here). */
  output?: bigint;
  /** For a page: its size, and which of its repeated entries this is. */
  pageSize?: bigint;
  repeatIndex?: number;
  repeat?: number;
  run?: Run;
}

export interface HwStats {
  levels: Array<{ name: string; entries: number; tables: number; tableBytes: number }>;
  runs: number;
  mappedBytes: bigint;
  tableMemoryBytes: number;
}

const cmp = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

export function runEnd(r: PageRun): bigint {
  return r.iova + r.pageSize * r.count;
}

/** Do the runs leave no gap in [start, end)? */
function coveredBy(runs: readonly Run[], start: bigint, end: bigint): boolean {
  let cursor = start;
  for (let i = 0; i < runs.length && cursor < end; i++) {
    const r = runs[i]!;
    if (r.iova > cursor) return false;
    const e = runEnd(r);
    if (e > cursor) cursor = e;
  }
  return cursor >= end;
}

/** A new run of `count` of r's pages from its page `first` on (the owner's slots not set). */
function piece(r: Run, first: bigint, count: bigint): Run {
  const off = first * r.pageSize;
  return { iova: r.iova + off, paddr: r.paddr + off, pageSize: r.pageSize, count, level: r.level, repeat: r.repeat, origin: r.origin, row: 0, from: 0 };
}

/** Does one of the (few) runs start at iova? */
function hasKey(runs: readonly Run[], iova: bigint): boolean {
  if (runs.length > 8) return false; // then the caller deletes and sets again: the same tree
  for (let i = 0; i < runs.length; i++) if (runs[i]!.iova === iova) return true;
  return false;
}

function emptyDelta(levels: number): HwDelta {
  const zeros: number[] = [];
  for (let i = 0; i < levels; i++) zeros.push(0);
  return {
    entriesWritten: zeros,
    entriesCleared: zeros.slice(),
    tablesAllocated: zeros.slice(),
    tablesFreed: zeros.slice(),
    invalidations: [],
  };
}

const TWO_64 = 1n << 64n;
/** 2^53: integers below it are exact as numbers (the table accounting's fast path). */
const EXACT = 9007199254740992;
/**
 * For a number computed from bigints by Number() and + or * (each step rounds monotonically):
 * inside (-2^53, 2^53) the inputs and the result were exact.
 */
const exactInt = (x: number): boolean => x < EXACT && x > -EXACT;
const NO_RUNS: readonly Run[] = [];
/** Reused for the tree's pair lookups (each result is read at once, never kept). */
const PAIR: [TreeKey, Run] = [0, undefined as unknown as Run];
/** Scratch of one rewrite's accounting: the first and last byte of each run, as numbers. */
let firstByte = new Float64Array(16);
let lastByte = new Float64Array(16);

/**
 * Merged IOVA ranges of runs sorted by IOVA (what coalesceRanges gives for them), or undefined
 * when they are not sorted.
 */
function runRanges(runs: readonly Run[]): Range[] | undefined {
  const out: Range[] = [];
  for (let i = 0; i < runs.length; i++) {
    const r = runs[i]!;
    if (i > 0 && r.iova < runs[i - 1]!.iova) return undefined;
    pushMerged(out, r.iova, runEnd(r));
  }
  return out;
}

/** Appends [s, e) to ranges merged in IOVA order (s is not below the last range's start). */
function pushMerged(out: Range[], s: bigint, e: bigint): void {
  const last = out[out.length - 1];
  if (last !== undefined && s <= last.end) {
    if (e > last.end) last.end = e;
  } else out.push({ start: s, end: e });
}

export class Domain {
  readonly profile: Profile;
  private tree: BTree<TreeKey, Run>;
  private readonly minPage: bigint;
  private readonly spaceEnd: bigint;
  private readonly levelOf = new Map<bigint, { level: number; repeat: number }>();
  /** log2 of the span one table of level L covers (the entry size of level L-1); index 0 unused. */
  private readonly spanShift: bigint[];
  /** 2^spanShift as numbers (exact: powers of two). */
  private readonly spanBytes: number[];
  /** minPage - 1. */
  private readonly alignMask: bigint;
  private entries: number[];
  private tables: number[];
  private log: RunChanges = { before: [], after: [] };
  private bytes = 0n;

  constructor(profile: Profile) {
    this.profile = profile;
    this.tree = new BTree<TreeKey, Run>(undefined, cmpKey);
    this.minPage = minPageSize(profile.pgsizeBitmap);
    this.spaceEnd = 1n << BigInt(profile.iovaBits);
    const lv = profile.format.levels;
    this.spanShift = lv.map((_, i) => (i === 0 ? 64n : BigInt(lv[i - 1]!.shift)));
    this.spanBytes = this.spanShift.map((sh) => 2 ** Number(sh));
    this.alignMask = this.minPage - 1n;
    this.entries = new Array<number>(lv.length).fill(0);
    this.tables = new Array<number>(lv.length).fill(0);
    this.tables[0] = 1;
  }

  /** An independent copy (O(1): the tree is copy-on-write; runs are immutable). */
  clone(): Domain {
    const d = Object.create(Domain.prototype) as Domain;
    Object.assign(d, this);
    d.tree = this.tree.clone();
    d.entries = [...this.entries];
    d.tables = [...this.tables];
    return d;
  }

  get runCount(): number {
    return this.tree.size;
  }

  get mappedBytes(): bigint {
    return this.bytes;
  }

  private leaf(pageSize: bigint): { level: number; repeat: number } {
    let l = this.levelOf.get(pageSize);
    if (!l) {
      l = leafLevelOf(this.profile.format, fls(pageSize));
      this.levelOf.set(pageSize, l);
    }
    return l;
  }

  private makeRun(p: PageRun, origin: MapOrigin): Run {
    const { level, repeat } = this.leaf(p.pageSize);
    return { iova: p.iova, paddr: p.paddr, pageSize: p.pageSize, count: p.count, level, repeat, origin, row: 0, from: 0 };
  }

  // ---- table accounting: tables of level L exist for each distinct span of 2^spanShift[L]
  // bytes that holds a leaf at level >= L (docs/semantics.md, "Hardware state").

  private shares(a: Run | undefined, b: Run | undefined, level: number): boolean {
    if (!a || !b || a.level < level || b.level < level) return false;
    const sh = this.spanShift[level]!;
    return (runEnd(a) - 1n) >> sh === b.iova >> sh;
  }

  /**
   * Distinct level-`level` table spans used by `items` (sorted, between the neighbours prev and
   * next), minus those shared along the chain prev, items..., next. The table count of a level
   * is this sum over the whole tree, so a local change only needs its window.
   */
  private chain(prev: Run | undefined, items: readonly Run[], next: Run | undefined, level: number): number {
    const sh = this.spanShift[level]!;
    let n = 0;
    let left = prev;
    for (const r of items) {
      if (r.level >= level) n += Number(((runEnd(r) - 1n) >> sh) - (r.iova >> sh) + 1n);
      if (this.shares(left, r, level)) n--;
      left = r;
    }
    if (this.shares(left, next, level)) n--;
    return n;
  }

  /**
   * Replaces the runs `olds` (adjacent in the tree, sorted) with `news` (sorted, inside the same
   * window). `kept` pages of the news were live before and are not rewritten in hardware.
   * Accounts entries, tables (with their descriptors in the parent level) and mapped bytes.
   */
  private rewrite(olds: readonly Run[], news: readonly Run[], hw: HwDelta, kept: readonly Run[] = NO_RUNS, prevHint: Run | undefined | null = null): void {
    const o0 = olds[0];
    const n0 = news[0];
    const oz = olds[olds.length - 1];
    const nz = news[news.length - 1];
    const lo = o0 && n0 ? (o0.iova < n0.iova ? o0.iova : n0.iova) : (o0 ?? n0)?.iova;
    const hi = oz && nz ? (oz.iova > nz.iova ? oz.iova : nz.iova) : (oz ?? nz)?.iova;
    if (lo === undefined || hi === undefined) return;
    // The live neighbours just outside the window (the window holds only `olds` now). A caller
    // that has just looked the left one up passes it (null: not known).
    const prev = prevHint !== null ? prevHint : this.tree.nextLowerPair(keyOf(lo), PAIR)?.[1];
    const next = this.tree.nextHigherPair(keyOf(hi), PAIR)?.[1];
    let maxLevel = 0;
    for (const r of olds) if (r.level > maxLevel) maxLevel = r.level;
    for (const r of news) if (r.level > maxLevel) maxLevel = r.level;
    if (maxLevel > 0) this.accountTables(prev, olds, news, next, maxLevel, hw);
    const log = this.log;
    for (let i = 0; i < olds.length; i++) log.before.push(olds[i]!);
    for (let i = 0; i < news.length; i++) log.after.push(news[i]!);
    for (const r of olds) {
      const n = Number(r.count) * r.repeat;
      this.entries[r.level]! -= n;
      hw.entriesCleared[r.level]! += n;
      this.bytes -= r.pageSize * r.count;
      // A key that a new run takes again is overwritten by set below (the same tree after).
      if (!hasKey(news, r.iova)) this.tree.delete(keyOf(r.iova));
    }
    for (const r of news) {
      const n = Number(r.count) * r.repeat;
      this.entries[r.level]! += n;
      hw.entriesWritten[r.level]! += n;
      this.bytes += r.pageSize * r.count;
      this.tree.set(keyOf(r.iova), r);
    }
    // Kept pages were counted as cleared and written again: they were never touched.
    for (const r of kept) {
      const n = Number(r.count) * r.repeat;
      hw.entriesCleared[r.level]! -= n;
      hw.entriesWritten[r.level]! -= n;
    }
  }

  /** Tables (and their descriptors) gained or lost at each level when `olds` become `news`. */
  private accountTables(prev: Run | undefined, olds: readonly Run[], news: readonly Run[], next: Run | undefined, maxLevel: number, hw: HwDelta): void {
    // Fast path: every address involved is below 2^53, so the spans are computed on numbers
    // (exactly: divisions by powers of two, floors of exact integers). Else bigints (chain).
    const no = olds.length;
    const n = no + news.length;
    if (firstByte.length < n) {
      firstByte = new Float64Array(2 * n);
      lastByte = new Float64Array(2 * n);
    }
    const S = firstByte;
    const E = lastByte;
    let exact = true;
    for (let i = 0; i < n; i++) {
      const r = i < no ? olds[i]! : news[i - no]!;
      const s = Number(r.iova);
      const bytes = Number(r.pageSize) * Number(r.count);
      const end = s + bytes;
      if (!(exactInt(s) && exactInt(bytes) && exactInt(end))) {
        exact = false;
        break;
      }
      S[i] = s;
      E[i] = end - 1;
    }
    let prevLast = 0;
    let nextFirst = 0;
    if (exact && prev) {
      const s = Number(prev.iova);
      const bytes = Number(prev.pageSize) * Number(prev.count);
      const end = s + bytes;
      if (exactInt(s) && exactInt(bytes) && exactInt(end)) prevLast = end - 1;
      else exact = false;
    }
    if (exact && next) {
      nextFirst = Number(next.iova);
      if (!exactInt(nextFirst)) exact = false;
    }
    for (let l = 1; l <= maxLevel; l++) {
      const d = exact
        ? this.chainNum(prev, prevLast, news, no, next, nextFirst, l) - this.chainNum(prev, prevLast, olds, 0, next, nextFirst, l)
        : this.chain(prev, news, next, l) - this.chain(prev, olds, next, l);
      if (d > 0) {
        hw.tablesAllocated[l]! += d;
        hw.entriesWritten[l - 1]! += d; // the new table's descriptor in its parent
      } else if (d < 0) {
        hw.tablesFreed[l]! -= d;
        hw.entriesCleared[l - 1]! -= d;
      }
      this.tables[l]! += d;
    }
  }

  /** chain() on numbers: the runs' first and last bytes are in the scratch arrays from `off`. */
  private chainNum(
    prev: Run | undefined,
    prevLast: number,
    items: readonly Run[],
    off: number,
    next: Run | undefined,
    nextFirst: number,
    level: number,
  ): number {
    const P = this.spanBytes[level]!;
    const S = firstByte;
    const E = lastByte;
    let n = 0;
    let left = prev !== undefined && prev.level >= level;
    let leftLast = prevLast;
    for (let i = 0; i < items.length; i++) {
      if (items[i]!.level >= level) {
        const first = Math.floor(S[off + i]! / P);
        const last = E[off + i]!;
        n += Math.floor(last / P) - first + 1;
        if (left && Math.floor(leftLast / P) === first) n--;
        left = true;
        leftLast = last;
      } else {
        left = false;
      }
    }
    if (left && next !== undefined && next.level >= level && Math.floor(leftLast / P) === Math.floor(nextFirst / P)) n--;
    return n;
  }

  private insert(r: Run, hw: HwDelta, prevHint: Run | undefined | null = null): void {
    this.rewrite(NO_RUNS, [r], hw, NO_RUNS, prevHint);
  }

  private remove(r: Run, hw: HwDelta): void {
    this.rewrite([r], NO_RUNS, hw);
  }

  /** The run holding this IOVA, if it is mapped. */
  find(iova: bigint): Run | undefined {
    const r = this.tree.getPairOrNextLower(keyOf(iova), PAIR)?.[1];
    if (r && runEnd(r) > iova) return r;
    return undefined;
  }

  /** Calls fn for each live run that intersects [start, end), in IOVA order (what runs() yields). */
  private eachRun(start: bigint, end: bigint, fn: (r: Run) => void): void {
    // The last run before end: when it starts at or before start, it is the only one that can
    // intersect (runs do not overlap), so one lookup answers.
    const last = this.tree.getPairOrNextLower(keyOf(end - 1n), PAIR)?.[1];
    if (last === undefined) return;
    if (last.iova <= start) {
      if (last.iova === start || runEnd(last) > start) fn(last);
      return;
    }
    const first = this.find(start);
    const from = first ? first.iova : start;
    this.tree.forRange(keyOf(from), keyOf(end), false, (_k: TreeKey, r: Run) => {
      fn(r);
    });
  }

  /** Live runs that intersect [start, end), in IOVA order: runs() as an array. */
  runsIn(start: bigint, end: bigint): Run[] {
    const out: Run[] = [];
    this.eachRun(start, end, (r) => {
      out.push(r);
    });
    return out;
  }

  /** Live runs that intersect [start, end), in IOVA order. */
  *runs(start = 0n, end: bigint = 1n << 64n): IterableIterator<Run> {
    const first = this.find(start);
    const from = first ? first.iova : start;
    for (const [, r] of this.tree.entries(keyOf(from))) {
      if (r.iova >= end) break;
      yield r;
    }
  }

  /**
   * Restores saved runs (in any order) without the checks of map: the objects are kept as given,
   * so a caller can keep its own references to them. Level and repeat are recomputed.
   */
  load(runs: Iterable<Run>): void {
    const hw = emptyDelta(this.profile.format.levels.length);
    for (const r of runs) {
      const { level, repeat } = this.leaf(r.pageSize);
      if (r.level !== level || r.repeat !== repeat) throw new RangeError(`run at ${hex(r.iova)}: level ${r.level} does not match the format`);
      this.insert(r, hw);
    }
    this.takeLog();
  }

  private takeLog(): RunChanges {
    const l = this.log;
    this.log = { before: [], after: [] };
    return l;
  }

  /** Forgets what an operation that did not finish (it threw) left in the log. */
  private clearLog(): void {
    if (this.log.before.length !== 0 || this.log.after.length !== 0) this.log = { before: [], after: [] };
  }

  private alignReason(what: Record<string, bigint>): string | undefined {
    let all = 0n;
    for (const k in what) all |= what[k]!;
    if ((all & (this.minPage - 1n)) === 0n) return undefined;
    for (const [k, v] of Object.entries(what)) {
      if (v % this.minPage !== 0n) return `${k} ${hex(v)} is not aligned to the smallest page size ${formatSize(this.minPage)}`;
    }
    return undefined;
  }

  /** iommu_map(): split into supported pages; atomic (all or nothing). */
  map(cmd: MapCommand): MapResult {
    const { iova, paddr, size } = cmd;
    const prot = cmd.prot ?? PROT.READ | PROT.WRITE;
    if (size === 0n) return { ok: false, errno: 'EINVAL', reason: 'size is 0' };
    if (((iova | paddr | size) & this.alignMask) !== 0n) {
      const mis = this.alignReason({ iova, paddr, size });
      if (mis) return { ok: false, errno: 'EINVAL', reason: mis };
    }
    const end = iova + size;
    if (end > this.spaceEnd) {
      return { ok: false, errno: 'ERANGE', reason: `${hex(iova)}+${formatSize(size)} ends beyond the ${this.profile.iovaBits}-bit input address space` };
    }
    if (paddr + size > TWO_64) return { ok: false, errno: 'ERANGE', reason: 'paddr+size is beyond 2^64' };
    const hit = this.tree.getPairOrNextLower(keyOf(end - 1n), PAIR)?.[1];
    if (hit && runEnd(hit) > iova) {
      return {
        ok: false,
        errno: 'EEXIST',
        reason: `${hex(hit.iova)}..${hex(runEnd(hit))} is already mapped (by #${hit.origin.ref})`,
      };
    }
    const origin: MapOrigin = { ref: cmd.ref, iova, paddr, size, prot, by: cmd.by };
    const hw = emptyDelta(this.profile.format.levels.length);
    const runs = splitRegion(iova, paddr, size, this.profile.pgsizeBitmap).map((p) => this.makeRun(p, origin));
    this.clearLog();
    // Nothing is mapped in [iova, end): the run left of each new one is `hit` (the last run
    // before iova, unless a degenerate empty run sits at iova), then the new run before it.
    let prev: Run | undefined | null = hit === undefined || hit.iova < iova ? hit : null;
    for (const r of runs) {
      this.insert(r, hw, prev);
      prev = r;
    }
    return { ok: true, runs, hw, changes: this.takeLog() };
  }

  /** iommu_unmap() under the profile's behaviour (or another, for what-if questions). */
  unmap(cmd: UnmapCommand, semantics = this.profile.semantics): UnmapResult {
    const requested: Range = { start: cmd.iova, end: cmd.iova + cmd.size };
    const res: UnmapResult = {
      ok: true,
      requested,
      unmappedSize: 0n,
      removed: [],
      rewritten: [],
      collateral: [],
      leftMapped: [],
      hw: emptyDelta(this.profile.format.levels.length),
      changes: undefined as unknown as RunChanges, // set below
    };
    this.clearLog();
    if (((cmd.iova | cmd.size) & this.alignMask) !== 0n) {
      const mis = this.alignReason({ iova: cmd.iova, size: cmd.size });
      if (mis) {
        res.changes = { before: [], after: [] };
        return this.reject(res, 'EINVAL', mis);
      }
    }
    if (semantics === 'strict') this.unmapStrict(cmd, res);
    else if (semantics === 'split') this.unmapSplit(cmd, res);
    else if (semantics === 'refuse-partial') this.unmapRefusePartial(cmd, res);
    else this.unmapLegacy(cmd, res, semantics === 'iommupt');
    this.finish(res);
    res.changes = this.takeLog();
    return res;
  }

  /**
   * What unmap() would report (its unmappedSize), without changing anything: the same loops,
   * reading the tree only.
   */
  predictUnmap(cmd: UnmapCommand, semantics = this.profile.semantics): bigint {
    if (((cmd.iova | cmd.size) & this.alignMask) !== 0n) return 0n;
    if (semantics === 'strict' || semantics === 'refuse-partial') return this.clone().unmap(cmd, semantics).unmappedSize;
    const end = cmd.iova + cmd.size;
    let cur = cmd.iova;
    let unmapped = 0n;
    if (semantics === 'split') {
      while (cur < end) {
        const r = this.find(cur);
        if (!r) break;
        const re = runEnd(r);
        const ce = end < re ? end : re;
        unmapped += ce - cur;
        cur = ce;
      }
      return unmapped;
    }
    for (const st of this.legacySteps(cmd, semantics === 'iommupt')) unmapped += st.k * st.r.pageSize;
    return unmapped;
  }

  /**
   * The steps of the 2011 loop (unmapLegacy), read from the tree as it is: in each, k pages from
   * page j of run r. A step either takes the rest of its run or ends the loop, so no run comes
   * twice, and the pages a step removes end at or before the next look-up: the steps are the
   * same whether the tree is changed as they go or not.
   */
  private legacySteps(cmd: UnmapCommand, fromHeadOnly = false): Array<{ r: Run; j: bigint; k: bigint }> {
    const steps: Array<{ r: Run; j: bigint; k: bigint }> = [];
    let cur = cmd.iova;
    let unmapped = 0n;
    while (unmapped < cmd.size) {
      const r = this.find(cur);
      if (!r) break;
      const s = r.pageSize;
      // iommupt: a request that starts inside a page, not at its head, removes nothing. (Only
      // the first step can: each later one starts where the page before it ended.)
      if (fromHeadOnly && (cur - r.iova) % s !== 0n) break;
      const j = (cur - r.iova) / s;
      const need = (cmd.size - unmapped + s - 1n) / s;
      const k = r.count - j < need ? r.count - j : need;
      steps.push({ r, j, k });
      unmapped += k * s;
      cur += k * s;
    }
    return steps;
  }

  /**
   * iommu_unmap() as a trace saw it: the kernel reported `observed` bytes unmapped. When the
   * profile's behaviour predicts the same, this is unmap(). Otherwise the kernel is the
   * authority: exactly the range it is taken to have removed (kernelRange) is removed, pages cut
   * at its edges keep their other part as smaller pages, and the result reports `observed` with
   * the profile's prediction in `predicted`.
   */
  unmapObserved(cmd: UnmapCommand, observed: bigint, semantics = this.profile.semantics): UnmapResult {
    const predicted = this.predictUnmap(cmd, semantics);
    if (predicted === observed) return this.unmap(cmd, semantics);
    const requested: Range = { start: cmd.iova, end: cmd.iova + cmd.size };
    const res: UnmapResult = {
      ok: true,
      requested,
      unmappedSize: observed,
      removed: [],
      rewritten: [],
      collateral: [],
      leftMapped: [],
      hw: emptyDelta(this.profile.format.levels.length),
      changes: undefined as unknown as RunChanges, // set below
      predicted,
    };
    this.clearLog();
    const k = kernelRange(cmd.iova, cmd.size, observed);
    // Whole smallest pages: the kernel's sizes are multiples of them; a custom trace may not be.
    const start = k.start - (k.start & this.alignMask);
    const endRaw = k.end + ((this.minPage - (k.end & this.alignMask)) & this.alignMask);
    const end = endRaw > this.spaceEnd ? this.spaceEnd : endRaw;
    if (start < end) this.removeExactly(start, end, res);
    this.finish(res);
    res.changes = this.takeLog();
    return res;
  }

  /**
   * Removes every mapped byte of [start, end), across holes; a page cut by an edge keeps its
   * other part, mapped again in the pages map would choose (as unmapSplit does).
   */
  private removeExactly(start: bigint, end: bigint, res: UnmapResult): void {
    for (const r of this.runsIn(start, end)) {
      const re = runEnd(r);
      this.cutRun(r, r.iova > start ? r.iova : start, re < end ? re : end, res);
    }
  }

  /**
   * Removes [cs, ce) of run r (inside it). Pages [j0, j1) are touched: the requested part goes;
   * the rest of a cut block is mapped again in the smaller pages map would choose for it (one
   * rewrite, so the hardware delta shows the block replaced by a table, not a table freed and
   * allocated again).
   */
  private cutRun(r: Run, cs: bigint, ce: bigint, res: UnmapResult): void {
    const s = r.pageSize;
    const j0 = (cs - r.iova) / s;
    const j1 = (ce - r.iova + s - 1n) / s;
    const ts = r.iova + j0 * s;
    const te = r.iova + j1 * s;
    const tpa = r.paddr + j0 * s;
    const rest: Run[] = [];
    if (ts < cs) for (const p of splitRegion(ts, tpa, cs - ts, this.profile.pgsizeBitmap)) rest.push(this.makeRun(p, r.origin));
    if (ce < te) for (const p of splitRegion(ce, tpa + (ce - ts), te - ce, this.profile.pgsizeBitmap)) rest.push(this.makeRun(p, r.origin));
    this.cutPages(r, j0, j1, res.hw, rest);
    res.rewritten.push(...rest);
    if (rest.length) res.hw.invalidations.push({ start: ts, end: te });
    for (const p of splitRegion(cs, tpa + (cs - ts), ce - cs, this.profile.pgsizeBitmap)) res.removed.push(this.makeRun(p, r.origin));
  }

  private reject(res: UnmapResult, errno: Errno, reason: string): UnmapResult {
    res.ok = false;
    res.errno = errno;
    res.reason = reason;
    res.leftMapped = this.mappedIn(res.requested);
    return res;
  }

  /** The parts of a range that are mapped, merged, in IOVA order. */
  mappedIn(r: Range): Range[] {
    const out: Range[] = [];
    const { start, end } = r;
    // Merged as they come (coalesceRanges of the clipped runs, which come in IOVA order).
    this.eachRun(start, end, (run) => {
      const s = run.iova > start ? run.iova : start;
      const re = runEnd(run);
      const e = re < end ? re : end;
      if (s < e) pushMerged(out, s, e);
    });
    return out;
  }

  /** Collateral, left-mapped and invalidation ranges from what was removed. */
  private finish(res: UnmapResult): void {
    const { start, end } = res.requested;
    for (const r of res.removed) {
      const rs = r.iova;
      const re = runEnd(r);
      if (rs < start) res.collateral.push({ start: rs, end: re < start ? re : start, origin: r.origin });
      if (re > end) res.collateral.push({ start: rs > end ? rs : end, end: re, origin: r.origin });
    }
    // When the removed pages cover the request (an unmap that did all it was asked) nothing of it
    // can still be mapped: no need to look.
    res.leftMapped = coveredBy(res.removed, start, end) ? [] : this.mappedIn(res.requested);
    // Usually only removed runs, in IOVA order: merged directly (the same ranges).
    const direct = res.hw.invalidations.length === 0 ? runRanges(res.removed) : undefined;
    if (direct) {
      res.hw.invalidations = direct;
      return;
    }
    res.hw.invalidations = coalesceRanges(
      [...res.hw.invalidations, ...res.removed.map((r) => ({ start: r.iova, end: runEnd(r) }))].sort((a, b) => cmp(a.start, b.start)),
    );
  }

  /**
   * Removes pages [j0, j1) of run r. Returns the removed part as a run; the pages before and
   * after stay as runs of their own.
   */
  private cutPages(r: Run, j0: bigint, j1: bigint, hw: HwDelta, added: readonly Run[] = NO_RUNS): Run {
    const kept: Run[] = [];
    if (j0 > 0n) kept.push(piece(r, 0n, j0));
    if (j1 < r.count) kept.push(piece(r, j1, r.count - j1));
    // kept is in IOVA order already.
    const news = added.length === 0 ? kept : [...kept, ...added].sort((a, b) => cmp(a.iova, b.iova));
    this.rewrite([r], news, hw, kept);
    return piece(r, j0, j1 - j0);
  }

  /**
   * The 2011 iommu_unmap() with a driver that removes the whole page at iova: loop while
   * unmapped < size, iova += removed page size; stop at the first unmapped iova.
   *
   * `fromHeadOnly`: the generic page table (drivers/iommu/generic_pt/iommu_pt.h, `__unmap_range`;
   * AMD and VT-d since v6.19): the same, except that a request starting inside a page, not at its
   * head, removes nothing and returns 0.
   */
  private unmapLegacy(cmd: UnmapCommand, res: UnmapResult, fromHeadOnly = false): void {
    for (const { r, j, k } of this.legacySteps(cmd, fromHeadOnly)) {
      res.removed.push(this.cutPages(r, j, j + k, res.hw));
      res.unmappedSize += k * r.pageSize;
    }
  }

  /**
   * io-pgtable-arm before v6.13 (arm_lpae_split_blk_unmap): remove exactly the request; a
   * block cut by it is replaced by smaller pages for the part that stays. Stops at a hole.
   */
  private unmapSplit(cmd: UnmapCommand, res: UnmapResult): void {
    const end = cmd.iova + cmd.size;
    let cur = cmd.iova;
    while (cur < end) {
      const r = this.find(cur);
      if (!r) break;
      const re = runEnd(r);
      const cutEnd = end < re ? end : re;
      this.cutRun(r, cur, cutEnd, res);
      res.unmappedSize += cutEnd - cur;
      cur = cutEnd;
    }
  }

  /**
   * io-pgtable-arm and io-pgtable-arm-v7s since v6.13 (`__arm_lpae_unmap`, `__arm_v7s_unmap`,
   * after "iommu/io-pgtable-arm: Remove split on unmap behavior"): the core's loop
   * (`__iommu_unmap`) hands the driver the request in chunks of the largest supported page size
   * that fits the chunk's alignment and the bytes left (`iommu_pgsize`), and for each chunk the
   * driver:
   * - finds a leaf larger than the chunk (the chunk is part of a large IOPTE, at its head or not):
   *   warns "Unmap of a partial large IOPTE is not allowed", removes nothing and returns 0;
   * - finds nothing at the chunk's level: returns 0;
   * - else clears the chunk's entry: a leaf of the chunk's size, or a table, which it frees with
   *   every page under it (holes inside included), and returns the chunk's size.
   * A 0 ends the core's loop; what earlier chunks removed stays removed.
   */
  private unmapRefusePartial(cmd: UnmapCommand, res: UnmapResult): void {
    // The chunks are read first, then [iova, stop) removed in one pass, so that a run spanning
    // several chunks is cut once.
    const end = cmd.iova + cmd.size;
    let cur = cmd.iova;
    while (cur < end) {
      const c = this.unmapChunk(cur, end - cur);
      if (c === 0n) break;
      const at = this.find(cur);
      if (at && at.pageSize > c) break;
      if (!at && this.runsIn(cur, cur + c).length === 0) break;
      cur += c;
    }
    // Pages no larger than their chunk, aligned to their size: each lies whole inside [iova,
    // stop) or, for a run that goes on past it, is cut at a page boundary (no rest to map again).
    if (cur > cmd.iova)
      for (const r of this.runsIn(cmd.iova, cur)) {
        const re = runEnd(r);
        this.cutRun(r, r.iova > cmd.iova ? r.iova : cmd.iova, re < cur ? re : cur, res);
      }
    res.unmappedSize = cur - cmd.iova;
  }

  /**
   * iommu_pgsize() as __iommu_unmap uses it: the largest supported page size no larger than the
   * bytes left and than the alignment of iova; 0 when none fits.
   */
  private unmapChunk(iova: bigint, left: bigint): bigint {
    let sizes = this.profile.pgsizeBitmap & ((2n << BigInt(fls(left))) - 1n);
    if (iova !== 0n) sizes &= (iova & -iova) * 2n - 1n;
    return sizes === 0n ? 0n : 1n << BigInt(fls(sizes));
  }

  /**
   * VFIO type1 v2 (vfio_dma_do_unmap) and iommufd (iopt_unmap_iova_range): whole mappings only.
   */
  private unmapStrict(cmd: UnmapCommand, res: UnmapResult): void {
    const { start, end } = res.requested;
    const iommufd = this.profile.emptyUnmapErrno === 'ENOENT';
    if (cmd.size === 0n) {
      this.reject(res, 'EINVAL', 'size is 0');
      return;
    }
    if (end > TWO_64) {
      this.reject(res, iommufd ? 'EOVERFLOW' : 'EINVAL', 'iova+size wraps past 2^64');
      return;
    }
    const cutMsg = (o: MapOrigin) => `the range cuts through the mapping ${hex(o.iova)}..${hex(o.iova + o.size)} made by #${o.ref}`;
    if (!iommufd) {
      const first = this.find(start);
      if (first && first.origin.iova !== start) {
        this.reject(res, 'EINVAL', cutMsg(first.origin));
        return;
      }
      const last = this.find(end - 1n);
      if (last && last.origin.iova + last.origin.size !== end) {
        this.reject(res, 'EINVAL', cutMsg(last.origin));
        return;
      }
    }
    // Whole mappings, in IOVA order. iommufd stops with ENOENT at the first one that sticks out
    // of the range, keeping those already removed (and reporting them).
    const victims = this.runsIn(start, end);
    for (const r of victims) {
      const o = r.origin;
      if (iommufd && (o.iova < start || o.iova + o.size > end)) {
        res.ok = false;
        res.errno = 'ENOENT';
        res.reason = cutMsg(o);
        break;
      }
      this.remove(r, res.hw);
      res.removed.push(r);
      res.unmappedSize += r.pageSize * r.count;
    }
    if (res.ok && iommufd && res.unmappedSize === 0n) {
      res.ok = false;
      res.errno = 'ENOENT';
      res.reason = 'nothing is mapped in the range';
    }
  }

  /**
   * The page-table path the hardware walks for this IOVA; none for an IOVA beyond the input
   * address space (the tables do not index it: the access faults before any walk).
   */
  walk(iova: bigint): WalkStep[] {
    if (iova >= this.spaceEnd) return [];
    const levels = this.profile.format.levels;
    const steps: WalkStep[] = [];
    const run = this.find(iova);
    for (let l = 0; l < levels.length; l++) {
      const lv = levels[l]!;
      const index = Number((iova >> BigInt(lv.shift)) % BigInt(lv.entries));
      if (run && run.level === l) {
        const off = (iova - run.iova) % run.pageSize;
        const pageStart = iova - off;
        const pagePa = run.paddr + (pageStart - run.iova);
        steps.push({
          level: l,
          levelName: lv.name,
          index,
          kind: 'page',
          output: pagePa + off,
          pageSize: run.pageSize,
          repeat: run.repeat,
          repeatIndex: Number(off >> BigInt(lv.shift)),
          run,
        });
        return steps;
      }
      if (run ? run.level > l : this.hasTable(iova, l + 1)) {
        steps.push({ level: l, levelName: lv.name, index, kind: 'table' });
        continue;
      }
      steps.push({ level: l, levelName: lv.name, index, kind: 'invalid' });
      return steps;
    }
    return steps;
  }

  /** Is there a level-`level` table whose span holds this IOVA? */
  private hasTable(iova: bigint, level: number): boolean {
    if (level >= this.profile.format.levels.length) return false;
    const sh = this.spanShift[level]!;
    const span = iova >> sh;
    const prev = this.tree.getPairOrNextLower(keyOf(iova))?.[1];
    const next = this.tree.nextHigherPair(keyOf(iova))?.[1];
    if (prev && prev.level >= level && (runEnd(prev) - 1n) >> sh === span) return true;
    if (next && next.level >= level && next.iova >> sh === span) return true;
    return false;
  }

  stats(): HwStats {
    const lv = this.profile.format.levels;
    const levels = lv.map((l, i) => ({ name: l.name, entries: this.entries[i]!, tables: this.tables[i]!, tableBytes: l.tableBytes }));
    return {
      levels,
      runs: this.tree.size,
      mappedBytes: this.bytes,
      tableMemoryBytes: levels.reduce((a, l) => a + l.tables * l.tableBytes, 0),
    };
  }
}
