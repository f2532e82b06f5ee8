/**
 * Stepped or harmful: what an over-unmap did to the caller that issued it.
 *
 * Under the 2011 unmap semantics (`legacy`) the driver removes the whole page at the IOVA and
 * returns its size, and a caller that consumes the returned size loses nothing it still wanted.
 * VFIO's teardown is written that way (drivers/vfio/vfio_iommu_type1.c, vfio_unmap_unpin() with
 * unmap_unpin_fast()/unmap_unpin_slow(): `*iova += unmapped`, the loop running while
 * `iova < end`): it asks for 4K, the AMD or VT-d driver removes an 8K..2M page, and the next
 * request starts where the removed page ended. Such an over-unmap is **stepped**. One whose
 * collateral somebody still relied on is **harmful**.
 *
 * An over-unmap whose collateral another caller mapped or still intends is harmful at once.
 * Otherwise the evidence comes from what follows in the same domain, and the verdict is given
 * by the first event that settles it:
 *
 * - `ended` (stepped): the removed range lies at or after the request and ends where the map it
 *   removed from ended: the last step of a loop that runs to the end of what it mapped.
 * - `advanced` (stepped): the caller's next unmap starts where the removed range ended.
 * - `covered` (stepped): the caller's following unmaps ask for every collateral byte (a loop that
 *   does not read the returned size, and finds the rest already gone), before anybody else uses it.
 * - `remapped` (stepped): the caller maps into the collateral itself: it knew the range was free.
 * - `fault` (harmful): an IO page fault hits the collateral.
 * - `reused` (harmful): another caller maps into the collateral before this one stepped past it.
 * - `not-stepped` (harmful): the caller's next unmap is elsewhere: neither where the removed range
 *   ended nor in the collateral.
 * - `other-owner` (harmful): the collateral was another caller's.
 *
 * Until one of these happens the over-unmap is `pending` (and counted as harmful by audits).
 * A fault on the collateral of a stepped over-unmap, later, makes it harmful (the faults
 * projection applies that, projections/faults.ts: the ledger finds which unmap last removed the
 * page). This module is pure: it sees facts, returns
 * verdicts, and keeps the undecided cases so that a ledger can store and reload them.
 */
export type StepReason = 'ended' | 'advanced' | 'covered' | 'remapped' | 'fault' | 'reused' | 'not-stepped' | 'other-owner';

export const STEPPED_REASONS: ReadonlySet<StepReason> = new Set(['ended', 'advanced', 'covered', 'remapped']);

export interface Span {
  start: bigint;
  end: bigint;
}

/** An over-unmap not decided yet: what a later event is compared with. */
export interface StepCase {
  /** The unmap's event position. */
  position: number;
  caller: string;
  /** The end of the range the unmap removed. */
  removedEnd: bigint;
  /** Collateral the caller has not asked for since (all of it at first). */
  uncovered: Span[];
}

export interface StepVerdict {
  /** The over-unmap's event position. */
  position: number;
  caller: string;
  stepped: boolean;
  reason: StepReason;
  /** The event that settled it (the over-unmap itself for `ended` and `other-owner`). */
  at: number;
  /** The caller's collateral (stepped: the caller no longer intends it). */
  collateral: Span[];
  /** The other callers, for `other-owner` and `reused`. */
  others?: string[];
}

/** One over-unmap as the ledger sees it when it is carried out. */
export interface OverUnmapFact {
  position: number;
  caller: string;
  request: Span;
  removed: Span;
  /** Each collateral piece, the caller of the map it came from, where that map ended, and who still intends it. */
  collateral: Array<Span & { mappedBy: string; mapEnd: bigint; intendedBy: readonly string[] }>;
  /** Callers that are nobody in particular (a mapping inferred from before the trace): never "another owner". */
  anonymous?: ReadonlySet<string>;
}

const overlaps = (a: Span, s: bigint, e: bigint) => a.start < e && s < a.end;

function subtract(spans: Span[], s: bigint, e: bigint): Span[] {
  const out: Span[] = [];
  for (const x of spans) {
    if (!overlaps(x, s, e)) out.push(x);
    else {
      if (x.start < s) out.push({ start: x.start, end: s });
      if (e < x.end) out.push({ start: e, end: x.end });
    }
  }
  return out;
}

/** The undecided over-unmaps of one domain, and the verdicts that later events give them. */
export class SteppingTracker {
  private open: StepCase[] = [];

  /** The cases still undecided (to store them). */
  get pending(): readonly StepCase[] {
    return this.open;
  }

  /** Takes back the undecided cases a ledger stored. */
  load(cases: StepCase[]): void {
    this.open.push(...cases.map((c) => ({ ...c, uncovered: c.uncovered.map((u) => ({ ...u })) })));
  }

  /** A new over-unmap: decided at once (`other-owner`, `ended`), or kept open. */
  overUnmap(f: OverUnmapFact): StepVerdict | undefined {
    const collateral = f.collateral.map((c) => ({ start: c.start, end: c.end }));
    const others = new Set<string>();
    for (const c of f.collateral) {
      if (c.mappedBy !== f.caller && !f.anonymous?.has(c.mappedBy)) others.add(c.mappedBy);
      for (const o of c.intendedBy) if (o !== f.caller) others.add(o);
    }
    if (others.size)
      return { position: f.position, caller: f.caller, stepped: false, reason: 'other-owner', at: f.position, collateral, others: [...others].sort() };
    const last = f.collateral[f.collateral.length - 1];
    if (last && f.removed.start >= f.request.start && f.collateral.every((c) => c.start >= f.request.end) && last.end === last.mapEnd) {
      return { position: f.position, caller: f.caller, stepped: true, reason: 'ended', at: f.position, collateral };
    }
    this.open.push({ position: f.position, caller: f.caller, removedEnd: f.removed.end, uncovered: collateral });
    return undefined;
  }

  /**
   * An unmap by `caller` of [start, end): its own open cases are settled (or advance), and a
   * case whose collateral it asks for makes progress. Call before the unmap's own over-unmap.
   */
  unmap(caller: string, start: bigint, end: bigint, at: number): { verdicts: StepVerdict[]; progressed: StepCase[] } {
    const verdicts: StepVerdict[] = [];
    const progressed: StepCase[] = [];
    this.open = this.open.filter((c) => {
      if (c.caller !== caller) return true;
      if (start === c.removedEnd) return (this.settle(verdicts, c, true, 'advanced', at), false);
      if (c.uncovered.some((u) => overlaps(u, start, end))) {
        c.uncovered = subtract(c.uncovered, start, end);
        if (!c.uncovered.length) return (this.settle(verdicts, c, true, 'covered', at), false);
        progressed.push(c);
        return true;
      }
      return (this.settle(verdicts, c, false, 'not-stepped', at), false);
    });
    return { verdicts, progressed };
  }

  /** A successful map of [start, end) by `caller`: into open collateral, it settles the case. */
  map(caller: string, start: bigint, end: bigint, at: number): StepVerdict[] {
    const out: StepVerdict[] = [];
    this.open = this.open.filter((c) => {
      if (!c.uncovered.some((u) => overlaps(u, start, end))) return true;
      if (c.caller === caller) this.settle(out, c, true, 'remapped', at);
      else this.settle(out, c, false, 'reused', at, [caller]);
      return false;
    });
    return out;
  }

  /** An IO page fault at iova: on open collateral, the case is harmful. */
  fault(iova: bigint, at: number): StepVerdict[] {
    const out: StepVerdict[] = [];
    this.open = this.open.filter((c) => {
      if (!c.uncovered.some((u) => u.start <= iova && iova < u.end)) return true;
      this.settle(out, c, false, 'fault', at);
      return false;
    });
    return out;
  }

  private settle(out: StepVerdict[], c: StepCase, stepped: boolean, reason: StepReason, at: number, others?: string[]): void {
    const v: StepVerdict = { position: c.position, caller: c.caller, stepped, reason, at, collateral: c.uncovered };
    if (others) v.others = others;
    out.push(v);
  }
}
