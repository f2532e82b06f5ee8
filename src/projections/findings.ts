/**
 * The findings projection (`unmap_findings`): one row per unmap that removed collateral (pages
 * outside its request), left part of its request mapped, or did otherwise than the profile
 * predicts (`divergent`), with the ranges in `detail` and the bytes the request and its collateral
 * reach (`reach_first`/`reach_last`, how `explain` and `history` select findings by range).
 *
 * An over-unmap's stepped/harmful verdict (core/stepping.ts) is written with its row when the
 * ledger's tracker gave it at once, else the row is `pending` with the case's state
 * (`step_state`), updated when a later unmap of its caller asks for part of the collateral, until
 * the event that settles it writes the verdict. The collateral (who mapped it, who still intended
 * it), the verdicts and the cases' states are facts of the items (`Decided`): the ledger keeps the
 * tracker, because a stepped verdict changes the caller's intent. The tracker reloads its open
 * cases from the pending rows (`stepCaseOf`) when a ledger opens a domain.
 *
 * The faults projection (faults.ts), registered after this one, turns a stepped verdict harmful
 * when a fault hits its collateral later.
 */
import type Database from 'better-sqlite3';
import { hex } from '../core/address.js';
import type { StepCase, StepVerdict } from '../core/stepping.js';
import { toDb } from './codec.js';
import { projectionJson, unreadable } from './corrupt.js';
import type { CollateralFinding, Decided, Projection, ProjectionWriter } from './registry.js';
import { statementPreparer, type U64 } from './statements.js';

/** A pending over-unmap as stored (unmap_findings.step_state). */
export function stepStateOf(c: StepCase): string {
  return JSON.stringify({ removedEnd: hex(c.removedEnd), uncovered: c.uncovered.map((u) => [hex(u.start), hex(u.end)]) });
}

/** A pending over-unmap read back from its row (the tracker's open case); an unreadable state is named. */
export function stepCaseOf(position: number, caller: string, state: string): StepCase {
  const what = () => `the pending over-unmap at event #${position} (unmap_findings.step_state)`;
  const j = projectionJson<{ removedEnd: unknown; uncovered: unknown }>(what, state);
  const big = (v: unknown): bigint => {
    if (typeof v !== 'string' || !/^0x[0-9a-f]{1,17}$/.test(v))
      throw unreadable(what(), `${typeof v === 'string' ? JSON.stringify(v.slice(0, 40)) : typeof v} is not a "0x" address`);
    return BigInt(v);
  };
  if (typeof j !== 'object' || j === null || !Array.isArray(j.uncovered)) throw unreadable(what(), 'not an object with removedEnd and uncovered');
  return {
    position,
    caller,
    removedEnd: big(j.removedEnd),
    uncovered: j.uncovered.map((u: unknown) => {
      if (!Array.isArray(u) || u.length !== 2) throw unreadable(what(), 'an uncovered range is not a pair');
      return { start: big(u[0]), end: big(u[1]) };
    }),
  };
}

const LAST_BYTE = (1n << 64n) - 1n;

export const findings: Projection = {
  name: 'findings',
  tables: ['unmap_findings'],
  open(db: Database.Database, path: string): ProjectionWriter {
    const p = statementPreparer(db, path);
    const insFinding = p<
      [
        position: number,
        domain: number,
        caller: string,
        site: string,
        iova: U64,
        size: U64,
        unmapped: U64,
        predicted: U64,
        collateralBytes: U64,
        leftBytes: U64,
        divergent: 0 | 1,
        reachFirst: U64,
        reachLast: U64,
        detail: string,
        step: 'stepped' | 'harmful' | 'pending' | null,
        stepWhy: string | null,
        stepPos: number | null,
        stepState: string | null,
        stepOthers: string | null,
      ]
    >(
      `INSERT INTO unmap_findings (position, domain, caller, site, iova, size, unmapped, predicted, collateral_bytes, left_bytes, divergent, reach_first, reach_last, detail,
           step, step_why, step_pos, step_state, step_others) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
    );
    const setStep = p<[step: 'stepped' | 'harmful', why: string, at: number, others: string | null, position: number]>(
      'UPDATE unmap_findings SET step = ?, step_why = ?, step_pos = ?, step_state = NULL, step_others = ? WHERE position = ?',
    );
    const setStepState = p<[state: string, position: number]>('UPDATE unmap_findings SET step_state = ? WHERE position = ?');

    const settle = (verdicts: readonly StepVerdict[]): void => {
      for (const v of verdicts) setStep.run(v.stepped ? 'stepped' : 'harmful', v.reason, v.at, v.others ? JSON.stringify(v.others) : null, v.position);
    };

    return {
      apply(batch: readonly Decided[]): void {
        for (const e of batch) {
          if (e.type === 'map' || e.type === 'fault') {
            if (e.settled) settle(e.settled);
            continue;
          }
          if (e.type !== 'unmap') continue;
          // This unmap's verdicts on its caller's earlier over-unmaps, and their progress, before its own row.
          if (e.settled) settle(e.settled);
          if (e.progressed) for (const c of e.progressed) setStepState.run(stepStateOf(c), c.position);
          const { collateral, verdict, pending, recorded, predicted } = e;
          const { iova, size } = e.body;
          const left = e.result.leftMapped;
          const divergent = recorded !== predicted;
          if (!collateral.length && !left.length && !divergent) continue;
          let cb = 0n;
          let first = iova;
          let last = size > 0n ? iova + size - 1n : iova;
          for (const c of collateral) {
            cb += c.size;
            if (c.iova < first) first = c.iova;
            if (c.iova + c.size - 1n > last) last = c.iova + c.size - 1n;
          }
          if (last > LAST_BYTE) last = LAST_BYTE;
          let lb = 0n;
          for (const l of left) lb += l.end - l.start;
          insFinding.run(
            e.position,
            e.domain,
            e.caller,
            e.site,
            toDb(iova),
            toDb(size),
            toDb(recorded),
            toDb(predicted),
            toDb(cb),
            toDb(lb),
            divergent ? 1 : 0,
            toDb(first),
            toDb(last),
            JSON.stringify({
              ok: e.result.ok,
              errno: e.result.errno,
              collateral: collateral.map((c: CollateralFinding) => ({
                iova: hex(c.iova),
                size: hex(c.size),
                mappedBy: c.mappedBy,
                mappedByCaller: c.mappedByCaller,
                owner: c.owners,
              })),
              leftMapped: left.map((l) => ({ iova: hex(l.start), size: hex(l.end - l.start) })),
            }),
            verdict ? (verdict.stepped ? 'stepped' : 'harmful') : pending ? 'pending' : null,
            verdict?.reason ?? null,
            verdict?.at ?? null,
            pending ? stepStateOf(pending) : null,
            verdict?.others ? JSON.stringify(verdict.others) : null,
          );
        }
      },
    };
  },
};
