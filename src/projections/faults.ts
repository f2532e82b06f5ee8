/**
 * The fault-cause projection (`faults`): one row per IO page fault with its cause, the event that
 * last removed the page, and what that event was. The cause is a fact of the item
 * (`Decided.cause`): the ledger finds it at the fault from the pages and the runs history.
 *
 * A fault on the collateral of a stepped over-unmap makes that over-unmap harmful
 * (core/stepping.ts): this projection updates its `unmap_findings` row. The row is the findings
 * projection's, so the update is written to give the same table whatever the batch: it changes
 * only a verdict given before the fault (`step_pos < fault`), as it would have found it at the
 * fault itself.
 */
import type Database from 'better-sqlite3';
import { toDb } from './codec.js';
import type { Decided, Projection, ProjectionWriter } from './registry.js';
import { statementPreparer, type U64 } from './statements.js';

export const faults: Projection = {
  name: 'faults',
  tables: ['faults'],
  updates: ['unmap_findings'],
  open(db: Database.Database, path: string): ProjectionWriter {
    const p = statementPreparer(db, path);
    const insFault = p<
      [position: number, domain: number, iova: U64, device: string | null, flags: number | null, cause: string, causePos: number | null, detail: string]
    >('INSERT INTO faults (position, domain, iova, device, flags, cause, cause_position, detail) VALUES (?,?,?,?,?,?,?,?)');
    const faultOnStepped = p<[faultPos: number, position: number, before: number]>(
      "UPDATE unmap_findings SET step = 'harmful', step_why = 'fault', step_pos = ? WHERE position = ? AND step = 'stepped' AND (step_pos IS NULL OR step_pos < ?)",
    );
    return {
      apply(batch: readonly Decided[]): void {
        for (const e of batch) {
          if (e.type !== 'fault') continue;
          const { cause, position, detail } = e.cause;
          if (cause === 'use-after-collateral-unmap' && position !== null) faultOnStepped.run(e.position, position, e.position);
          insFault.run(e.position, e.domain, toDb(e.body.iova), e.body.device ?? null, e.body.flags ?? null, cause, position, JSON.stringify(detail));
        }
      },
    };
  },
};
