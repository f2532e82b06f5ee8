/**
 * The hardware projection (`hw_state`): a snapshot of a domain's page-table counts and IOTLB
 * invalidations at every HW_CHECKPOINT_EVERY-th event of its stream. The counts are a fact of the
 * item (`Decided.hardware`, taken by the ledger just after the event); `state --hw` reads the
 * invalidations of the last snapshot at or before its point.
 */
import type Database from 'better-sqlite3';
import { hex } from '../core/address.js';
import type { Decided, Projection, ProjectionWriter } from './registry.js';
import { statementPreparer } from './statements.js';

/** A domain's hardware snapshot is taken at every this-many-th event of its stream. */
export const HW_CHECKPOINT_EVERY = 4096;

export const hardware: Projection = {
  name: 'hardware',
  tables: ['hw_state'],
  open(db: Database.Database, path: string): ProjectionWriter {
    const p = statementPreparer(db, path);
    const insHw = p<[domain: number, position: number, stats: string]>('INSERT OR REPLACE INTO hw_state (domain, position, stats) VALUES (?,?,?)');
    return {
      apply(batch: readonly Decided[]): void {
        for (const e of batch) {
          const hw = e.hardware;
          if (hw === undefined) continue;
          const st = hw.stats;
          insHw.run(
            e.domain,
            e.position,
            JSON.stringify({
              levels: st.levels,
              runs: st.runs,
              mappedBytes: hex(st.mappedBytes),
              tableMemoryBytes: st.tableMemoryBytes,
              invalidations: hw.invalidations,
              invalidatedBytes: hex(hw.invalidatedBytes),
            }),
          );
        }
      },
    };
  },
};
