/**
 * The oracle of a generated trace: what an importer's ledger should be compared with. Plain
 * functions over the truth (truth.ts) and the printed order (render.ts).
 *
 * States are sets of live byte ranges. A map record is live for the bytes no unmap in the state
 * removed from it (UnmapEvent.removes, attributed by the core Domain to the map record that
 * owned each removed page). Two states are defined for "after k printed records":
 *
 * - liveUnionAt(k): the true state at the true time of printed record k: every truth event
 *   whose true time is <= that record's (seq <= its seq), pre-trace events included. k = 0: the
 *   state at the cut (pre-trace events only). Not monotonic in k when records print out of true
 *   order.
 * - liveUnionAfter(k): the pre-trace events plus exactly the first k printed records, taken in
 *   true order: what a perfect importer (true domains, true order) holds after k records.
 *
 * At a consistent cut (consistentCuts: the first k printed records are the first k events after
 * the cut, as a set) both equal the true state after those events (liveUnionAtSeq).
 *
 * Depth unions list, for each piece of IOVA space, in how many domains it is mapped.
 */
import type { RenderedTrace } from './render.js';
import { depthUnion, normalize, subtract, type ByteRange, type DepthRange } from './ranges.js';
import type { MapEvent, Truth, TruthEvent, UnmapEvent } from './truth.js';

export interface OracleRecord {
  /** 1-based line number in the file. */
  lineNo: number;
  /** 0-based position among the printed records (file order). */
  index: number;
  /** Position in the true global order (Truth.events index). */
  seq: number;
  /** The true domain (Truth.domains index). */
  domain: number;
  kind: TruthEvent['kind'];
  event: TruthEvent;
  /** The timestamp text and task name as printed. */
  timestamp: string;
  comm: string;
}

/** Pre-trace mappings of one domain that printed unmaps removed (the trace reveals them). */
export interface RevealedPreTrace {
  domain: number;
  /** The pre-trace map events (never printed) that printed unmaps removed bytes of. */
  maps: Array<{ seq: number; iova: bigint; size: bigint }>;
  /** The bytes those unmaps removed from them, normalized. */
  removed: ByteRange[];
}

/** An unmap printed before a map record it removes bytes of (ties, skew). */
export interface CausalInversion {
  unmapLine: number;
  mapLine: number;
  unmapSeq: number;
  mapSeq: number;
}

export class Oracle {
  readonly records: OracleRecord[];
  /** Events before the cut (seq < preTraceCount are never printed). */
  readonly preTraceCount: number;
  /** Printed unmaps whose unmapped_size > size. */
  readonly overUnmaps: number;
  /** Divergences (unmapped_size the profile would not predict) under the true profile: none, by construction. */
  readonly expectedDivergences = 0;
  readonly revealedPreTrace: RevealedPreTrace[];
  readonly causalInversions: CausalInversion[];
  /** k (0..records.length) at which the first k printed records are the first k events after the cut. */
  readonly consistentCuts: number[];
  /** The largest t(a) - t(b), ns, over records a printed before b. */
  readonly maxInversionNs: number;
  /** What maxInversionNs can be at most: skewUs µs, plus just under 1 µs with ties on. */
  readonly inversionBoundNs: number;
  private readonly indexOfSeq = new Map<number, number>();
  private readonly byLine = new Map<number, OracleRecord>();

  constructor(
    readonly truth: Truth,
    rendered: RenderedTrace,
  ) {
    this.preTraceCount = truth.preTraceCount;
    this.records = rendered.records.map((r, index) => {
      const event = truth.events[r.seq]!;
      return { lineNo: r.lineNo, index, seq: r.seq, domain: event.domain, kind: event.kind, event, timestamp: r.timestamp, comm: r.comm };
    });
    for (const r of this.records) {
      this.indexOfSeq.set(r.seq, r.index);
      this.byLine.set(r.lineNo, r);
    }

    let over = 0;
    const revealed = new Map<number, { maps: Map<number, MapEvent>; removed: ByteRange[] }>();
    const inversions: CausalInversion[] = [];
    for (const r of this.records) {
      if (r.event.kind !== 'unmap') continue;
      const u = r.event;
      if (u.unmapped > u.size) over++;
      for (const rm of u.removes) {
        const m = truth.events[rm.map] as MapEvent;
        if (!m.printed) {
          let e = revealed.get(u.domain);
          if (!e) revealed.set(u.domain, (e = { maps: new Map(), removed: [] }));
          e.maps.set(m.seq, m);
          e.removed.push({ start: rm.start, end: rm.end });
        } else {
          const mi = this.indexOfSeq.get(m.seq)!;
          if (mi > r.index) inversions.push({ unmapLine: r.lineNo, mapLine: this.records[mi]!.lineNo, unmapSeq: u.seq, mapSeq: m.seq });
        }
      }
    }
    this.overUnmaps = over;
    this.causalInversions = inversions;
    this.revealedPreTrace = [...revealed.entries()]
      .sort((x, y) => x[0] - y[0])
      .map(([domain, e]) => ({
        domain,
        maps: [...e.maps.values()].sort((x, y) => x.seq - y.seq).map((m) => ({ seq: m.seq, iova: m.iova, size: m.size })),
        removed: normalize(e.removed),
      }));

    const cuts = [0];
    let maxSeq = -1;
    let maxT = -Infinity;
    let maxInv = 0;
    this.records.forEach((r, i) => {
      if (r.seq > maxSeq) maxSeq = r.seq;
      if (maxSeq === this.preTraceCount + i) cuts.push(i + 1);
      const t = r.event.tNs;
      if (maxT - t > maxInv) maxInv = maxT - t;
      if (t > maxT) maxT = t;
    });
    this.consistentCuts = cuts;
    this.maxInversionNs = maxInv;
    this.inversionBoundNs = truth.options.skewUs * 1000 + (truth.options.ties ? 999 : 0);
  }

  /** The printed record on a 1-based line (undefined for header lines). */
  line(lineNo: number): OracleRecord | undefined {
    return this.byLine.get(lineNo);
  }

  /** The true domain of the record on a line. */
  domainOfLine(lineNo: number): number | undefined {
    return this.byLine.get(lineNo)?.domain;
  }

  /** The position in the true order of the record on a line. */
  seqOfLine(lineNo: number): number | undefined {
    return this.byLine.get(lineNo)?.seq;
  }

  /** Live ranges per domain once the truth events with seq < s have happened. */
  liveByDomainAtSeq(s: number): Map<number, ByteRange[]> {
    return this.live(() => true, s);
  }

  liveUnionAtSeq(s: number): DepthRange[] {
    return depthUnion(this.liveByDomainAtSeq(s).values());
  }

  /** Per domain: the true state at the true time of printed record k (see the file comment). */
  liveByDomainAt(k: number): Map<number, ByteRange[]> {
    this.checkK(k);
    return this.liveByDomainAtSeq(k === 0 ? this.preTraceCount : this.records[k - 1]!.seq + 1);
  }

  liveUnionAt(k: number): DepthRange[] {
    return depthUnion(this.liveByDomainAt(k).values());
  }

  /** Per domain: pre-trace events plus the first k printed records, in true order. */
  liveByDomainAfter(k: number): Map<number, ByteRange[]> {
    this.checkK(k);
    return this.live((seq) => seq < this.preTraceCount || this.indexOfSeq.get(seq)! < k, this.truth.events.length);
  }

  liveUnionAfter(k: number): DepthRange[] {
    return depthUnion(this.liveByDomainAfter(k).values());
  }

  /**
   * The first k printed records only, in true order, without the pre-trace maps: what an
   * importer can know after k records (a pre-trace mapping shows only in its unmap, which
   * removes it again).
   */
  liveUnionPrintedAfter(k: number): DepthRange[] {
    this.checkK(k);
    return depthUnion(this.live((seq) => seq >= this.preTraceCount && this.indexOfSeq.get(seq)! < k, this.truth.events.length).values());
  }

  private checkK(k: number): void {
    if (!Number.isInteger(k) || k < 0 || k > this.records.length) throw new RangeError(`k ${k} is outside 0..${this.records.length}`);
  }

  /** The state of the events with seq < upTo that `include` accepts. Domains with nothing live are left out. */
  private live(include: (seq: number) => boolean, upTo: number): Map<number, ByteRange[]> {
    const maps: MapEvent[] = [];
    const removed = new Map<number, ByteRange[]>();
    const n = Math.min(upTo, this.truth.events.length);
    for (let s = 0; s < n; s++) {
      const ev = this.truth.events[s]!;
      if (!include(s)) continue;
      if (ev.kind === 'map') maps.push(ev);
      else if (ev.kind === 'unmap') {
        for (const rm of (ev as UnmapEvent).removes) {
          const l = removed.get(rm.map);
          if (l) l.push({ start: rm.start, end: rm.end });
          else removed.set(rm.map, [{ start: rm.start, end: rm.end }]);
        }
      }
    }
    const per = new Map<number, ByteRange[]>();
    for (const m of maps) {
      const left = subtract([{ start: m.iova, end: m.iova + m.size }], normalize(removed.get(m.seq) ?? []));
      if (left.length === 0) continue;
      const l = per.get(m.domain);
      if (l) l.push(...left);
      else per.set(m.domain, left);
    }
    for (const [d, l] of per) per.set(d, normalize(l));
    return per;
  }
}
