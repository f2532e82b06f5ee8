/**
 * A ledger made from a generated trace, read the way the oracle states it: the union of its
 * address spaces at a position, and the position where exactly the records of the first lines are
 * stored (test/import/generated.test.ts and scripts/check-generated.ts compare the two).
 */
import type { Queries } from '../../../src/projections/queries.js';
import type { GeneratedTrace } from './arbitrary.js';
import { depthUnion, type ByteRange } from './ranges.js';

/** JSON with bigints as "0x" text: how unions are compared (and shown when they differ). */
export function show(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v));
}

export interface LedgerView {
  /** The union of the spaces just after event `at`, as show() text. */
  unionAt(at: number): string;
  /** The position after which the stored maps and unmaps are exactly those of lines <= line; undefined when none is. */
  positionAfterLine(line: number): number | undefined;
  lastPosition: number;
}

export function ledgerView(q: Queries, spaces: readonly string[]): LedgerView {
  const evs = q.db
    .prepare("SELECT position, json_extract(data, '$.from.line') AS line FROM stored_events WHERE type IN ('map','unmap') ORDER BY position")
    .all() as Array<{ position: bigint; line: bigint }>;
  return {
    lastPosition: q.lastPosition,
    unionAt(at: number): string {
      const per: ByteRange[][] = [];
      for (const sp of spaces) per.push(q.stateAt(sp, at).pages.map((p) => ({ start: p.iova, end: p.iova + p.pageSize * p.count })));
      return show(depthUnion(per));
    },
    positionAfterLine(line: number): number | undefined {
      // The last position of an event of a line <= L, if no event of a later line comes before it.
      let P = 0;
      let clean = true;
      for (const e of evs) {
        if (Number(e.line) <= line) {
          if (!clean) break;
          P = Number(e.position);
        } else clean = false;
      }
      if (!clean && evs.some((e) => Number(e.line) <= line && Number(e.position) > P)) return undefined;
      return P;
    },
  };
}

/** The first consistent cut (k records, their last line) where the ledger's union is not the truth's, if any. */
export function firstWrongCut(t: GeneratedTrace, v: LedgerView): { k: number; line: number; ours: string; truth: string } | undefined {
  for (const k of t.oracle.consistentCuts) {
    const line = k === 0 ? 0 : t.oracle.records[k - 1]!.lineNo;
    const P = v.positionAfterLine(line);
    if (P === undefined) continue;
    const ours = v.unionAt(P);
    const truth = show(t.oracle.liveUnionPrintedAfter(k));
    if (ours !== truth) return { k, line, ours, truth };
  }
  const ours = v.unionAt(v.lastPosition);
  const truth = show(t.oracle.liveUnionPrintedAfter(t.oracle.records.length));
  return ours === truth ? undefined : { k: t.oracle.records.length, line: Infinity, ours, truth };
}
