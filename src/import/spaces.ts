/**
 * The address spaces of one import and what each holds, as the ledger will hold it.
 *
 * Tracepoints carry no domain, so an import separates records into spaces (route.ts decides
 * which). Each space keeps a shadow of its pages (a core Domain fed the very commands this
 * import emits, so it equals the ledger's state of that domain), the ranges the trace ever
 * touched in it (for pre-trace inference), its devices and its recent removals (for faults).
 * The shadow makes every decision a function of the trace alone: an import that is interrupted
 * and run again, or two imports of the same file at once, decide exactly the same.
 *
 * This module turns decisions into commands (with the record's provenance) and hands them to
 * the sink in the order decided.
 */
import { Domain } from '../core/domain.js';
import { kernelRange } from '../core/observed.js';
import type { Profile, Semantics } from '../core/profile.js';
import { keyOf, type TreeKey } from '../core/treekey.js';
import { BEFORE_TRACE_CALLER, type Command } from '../events/schema.js';
import { Coverage } from './coverage.js';
import { debugOrigin } from './debug-origin.js';
import type { TraceRecord } from './parse.js';

export { BEFORE_TRACE_CALLER };

export type Emit = (cmd: Command, line: number) => void;

/**
 * A record read back from a stored event (reroute.ts) rather than parsed from a line: the caller
 * and site it was stored with stand instead of --caller, the task or a debug line's prefix.
 */
export type StoredRecord = TraceRecord & { stored?: { caller?: string; site?: string } };

export interface SpaceHost {
  /**
   * A domain of this name as the ledger held it before this import stored anything in it;
   * undefined when there is none (or this import created it).
   */
  existing(name: string): { core: Domain; destroyed: boolean } | undefined;
  /** The name of the k-th space (0-based) this import opens: the same on every run of one source. */
  spaceName(k: number): string;
  /**
   * The domain as the ledger holds it, when the ledger applies each command this import emits
   * as it is emitted (an import that is not resumed): the space then reads it instead of keeping
   * a shadow of its own. Asked once the space exists in the ledger.
   */
  live?(name: string): Domain | undefined;
}

export interface SpaceOptions {
  /** Profile and unmap behaviour of the spaces this import creates. */
  profile: Profile;
  profileName: string;
  semantics?: Semantics;
  /** Caller name for every command (else the task, else a debug line's prefix). */
  caller?: string;
  sourceKey: string;
  sourceName: string;
}

export interface Space {
  index: number;
  name: string;
  /** Its pages: the ledger's own domain (live), or a shadow this module feeds (`own`). */
  core: Domain;
  own: boolean;
  touched: Coverage;
  devices: Set<string>;
  /** In the ledger before this import (keeps its stored profile). */
  existed: boolean;
  /** The last removals (unmap order), newest last: where a fault's IOVA went away. */
  removals: Array<{ start: bigint; end: bigint; seq: number }>;
  /**
   * IOVA allocations, start -> end: a map, or a whole scatter-gather list (iommu-dma maps one
   * allocation in pieces and unmaps it at once). An unmap of exactly one is the best match. Kept
   * by start only (cheap): an entry is checked against the live pages when it is used, and
   * dropped when an unmap starts there (or when the entries outnumber the live runs). Start and
   * end as tree keys (numbers below 2^53: treekey.ts), which cost less than bigints.
   */
  allocations: Map<TreeKey, TreeKey>;
}

/** Recent removals kept per space (faults are looked up against them). */
const REMOVALS_KEPT = 4096;

export class DestroyedDomainError extends Error {}

export class Spaces {
  readonly list: Space[] = [];
  private readonly byName = new Map<string, Space>();
  private opened = 0;
  /** Running number of the commands applied to the shadows (origin references, removal order). */
  private seq = 0;
  private empty: Domain | undefined;

  constructor(
    private readonly host: SpaceHost,
    private readonly opts: SpaceOptions,
    private readonly emit: Emit,
  ) {}

  get(name: string): Space | undefined {
    return this.byName.get(name);
  }

  /** The next inferred space (as1, as2, ...), or the named one (--domain, dev=), opened on first use. */
  open(line: number, name?: string): Space {
    if (name !== undefined) {
      const s = this.byName.get(name);
      if (s) return s;
    }
    const n = name ?? this.host.spaceName(this.opened++);
    const known = this.host.existing(n);
    if (known?.destroyed) {
      throw new DestroyedDomainError(
        `${this.opts.sourceName}:${line}: domain: ${JSON.stringify(n)} was destroyed, so this import cannot put records in it (import into another ledger, or give --domain NAME)`,
      );
    }
    const s: Space = {
      index: this.list.length,
      name: n,
      core: undefined as unknown as Domain, // set below, once the ledger holds the domain
      own: true,
      touched: new Coverage(),
      devices: new Set(),
      existed: known !== undefined,
      removals: [],
      allocations: new Map(),
    };
    this.list.push(s);
    this.byName.set(n, s);
    if (!known) {
      const cmd: Record<string, unknown> = { op: 'domain', domain: n, profile: this.opts.profileName, id: `${this.opts.sourceKey}:domain:${n}` };
      if (this.opts.semantics) cmd.semantics = this.opts.semantics;
      this.emit(cmd as unknown as Command, line);
    }
    const live = this.host.live?.(n);
    if (live) {
      s.core = live;
      s.own = false;
    } else s.core = known ? known.core.clone() : new Domain(this.opts.profile);
    return s;
  }

  /** An empty domain of the profile new spaces get, to try a fit before opening one (clone it to change it). */
  scratch(): Domain {
    return (this.empty ??= new Domain(this.opts.profile));
  }

  /** Provenance of a record as command fields (names clipped to what the schema takes). */
  private base(op: string, s: Space, rec: TraceRecord, extra: Record<string, unknown>): Record<string, unknown> {
    const c: Record<string, unknown> = { op, domain: s.name, ...extra };
    const kept = (rec as StoredRecord).stored;
    if (kept) {
      // A record read back from a stored event (reroute.ts): its caller and site as they were stored.
      if (kept.caller !== undefined) c.caller = kept.caller;
      if (kept.site !== undefined) c.site = kept.site;
    } else {
      const origin = rec.prefix !== undefined ? debugOrigin(rec.prefix) : undefined;
      const caller = this.opts.caller ?? rec.task ?? origin?.caller;
      if (caller !== undefined) c.caller = caller.slice(0, 200);
      if (origin?.site !== undefined) c.site = origin.site.slice(0, 500);
    }
    if (rec.task !== undefined) c.task = rec.task.slice(0, 200);
    if (rec.pid !== undefined) c.pid = rec.pid;
    if (rec.tgid !== undefined) c.tgid = rec.tgid;
    if (rec.cpu !== undefined) c.cpu = rec.cpu;
    if (rec.timestamp !== undefined) c.time = rec.timestamp;
    return c;
  }

  /** Notes that [start, end) was mapped as one allocation (a map, or a scatter-gather list). */
  allocated(s: Space, start: bigint, end: bigint): void {
    s.allocations.set(keyOf(start), keyOf(end));
    // A live allocation starts with a live run, so after a sweep there are no more entries than
    // runs; at least runCount + 4096 notes come between sweeps.
    if (s.allocations.size > 2 * s.core.runCount + 4096) {
      for (const a of s.allocations.keys()) if (!s.core.find(BigInt(a))) s.allocations.delete(a);
    }
  }

  /** Is [start, end) exactly one live allocation of the space: noted so, and still mapped by maps inside it only? */
  isAllocation(s: Space, start: bigint, end: bigint): boolean {
    if (s.allocations.get(keyOf(start)) !== keyOf(end)) return false;
    const runs = s.core.runsIn(start, end);
    if (!runs.length || runs[0]!.iova > start) return false;
    let cur = start;
    for (const r of runs) {
      if (r.iova > cur || r.origin.iova < start || r.origin.iova + r.origin.size > end) return false;
      cur = r.iova + r.pageSize * r.count;
    }
    return cur >= end;
  }

  map(s: Space, rec: TraceRecord, line: number): void {
    const iova = rec.iova!;
    const size = rec.size!;
    if (s.own) s.core.map({ iova, paddr: rec.paddr!, size, ref: ++this.seq });
    s.touched.add(iova, iova + size);
    this.emit(this.base('map', s, rec, { iova, paddr: rec.paddr, size }) as unknown as Command, line);
  }

  /**
   * A mapping that existed before the trace began, inferred from the unmap on `line`. Its
   * physical address is unknown: it is stored as the IOVA (so the page split follows the IOVA's
   * alignment), and every query shows the mapping as inferred.
   */
  mapBeforeTrace(s: Space, iova: bigint, size: bigint, line: number, k: number): void {
    if (s.own) s.core.map({ iova, paddr: iova, size, ref: ++this.seq });
    s.touched.add(iova, iova + size);
    const cmd = {
      op: 'map',
      domain: s.name,
      iova,
      paddr: iova,
      size,
      inferred: 'before-trace',
      caller: BEFORE_TRACE_CALLER,
      id: `${this.opts.sourceKey}:${line}:before${k}`,
    };
    this.emit(cmd as unknown as Command, line);
  }

  unmap(s: Space, rec: TraceRecord, line: number): void {
    const iova = rec.iova!;
    const size = rec.size ?? 0n;
    const observed = rec.unmappedSize;
    // What went away: the range the kernel reports it removed (core/observed.ts), else what the
    // profile removes.
    const k = observed !== undefined ? kernelRange(iova, size, observed) : { start: iova, end: iova + s.core.predictUnmap({ iova, size }) };
    if (s.own) {
      if (observed !== undefined) s.core.unmapObserved({ iova, size }, observed);
      else s.core.unmap({ iova, size });
    }
    s.touched.add(iova, iova + size);
    s.touched.add(k.start, k.end);
    if (k.end > k.start) s.removals.push({ start: k.start, end: k.end, seq: ++this.seq });
    if (s.removals.length > REMOVALS_KEPT * 2) s.removals.splice(0, s.removals.length - REMOVALS_KEPT);
    s.allocations.delete(keyOf(iova));
    if (k.start !== iova) s.allocations.delete(keyOf(k.start));
    const extra: Record<string, unknown> = { iova, size };
    if (observed !== undefined) extra.observedUnmapped = observed;
    this.emit(this.base('unmap', s, rec, extra) as unknown as Command, line);
  }

  fault(s: Space, rec: TraceRecord, line: number): void {
    const extra: Record<string, unknown> = { iova: rec.iova };
    if (rec.device) extra.device = rec.device.slice(0, 200);
    if (rec.driver) extra.driver = rec.driver.slice(0, 200);
    if (rec.faultFlags !== undefined) extra.flags = rec.faultFlags;
    if (rec.device) s.devices.add(rec.device);
    this.emit(this.base('fault', s, rec, extra) as unknown as Command, line);
  }

  device(op: 'attach' | 'detach', s: Space, rec: TraceRecord, line: number): void {
    const device = rec.device!;
    if (op === 'attach') s.devices.add(device);
    else s.devices.delete(device);
    const extra: Record<string, unknown> = { device: device.slice(0, 200) };
    if (op === 'attach' && rec.groupId !== undefined) extra.groupId = rec.groupId;
    this.emit(this.base(op, s, rec, extra) as unknown as Command, line);
  }

  /** The latest removal of `iova` in a space (its order number), if it is still remembered. */
  lastRemoval(s: Space, iova: bigint): number | undefined {
    for (let i = s.removals.length - 1; i >= 0; i--) {
      const r = s.removals[i]!;
      if (r.start <= iova && iova < r.end) return r.seq;
    }
    return undefined;
  }
}
