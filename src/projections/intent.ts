/**
 * The mapping-intent projection (`intent`, `intent_snapshots`): per caller, the IOVA ranges it
 * believes mapped (its maps minus its own unmaps, minus the collateral of its stepped
 * over-unmaps), over time, and the latest snapshot of each domain's live intent.
 *
 * The ledger keeps the live intent in memory (the findings need it: who still intends an unmap's
 * collateral) and hands each change as a fact of the item (`Decided.intent`): the rows born, with
 * the row id it gave each in order of birth, and the ids of the rows ended. Rows are held here
 * until FLUSH_EVERY have gathered or the transaction ends, so that a row born and ended meanwhile
 * (most mappings live briefly) is inserted once, already ended; its id is the same either way.
 * A snapshot is a fact too (`Decided.intentSnapshot`, taken by the ledger just after the event):
 * only the latest of a domain is kept.
 */
import type Database from 'better-sqlite3';
import { toDb } from './codec.js';
import type { Decided, IntentBirth, Projection, ProjectionWriter } from './registry.js';
import { statementPreparer, type U64 } from './statements.js';

/** Intent rows held before they are written. */
const FLUSH_EVERY = 16384;

/** A row born and not written yet: its domain, its birth and, once ended, its end. */
interface PendingIntent {
  domain: number;
  from: number;
  to: number | null;
  birth: IntentBirth;
}

export const intent: Projection = {
  name: 'intent',
  tables: ['intent', 'intent_snapshots'],
  open(db: Database.Database, path: string): ProjectionWriter {
    const p = statementPreparer(db, path);
    const insIntent = p<[id: number, domain: number, caller: string, iova: U64, iovaLast: U64, validFrom: number, validTo: number | null, mapPos: number]>(
      'INSERT INTO intent (id, domain, caller, iova, iova_last, valid_from, valid_to, map_pos) VALUES (?,?,?,?,?,?,?,?)',
    );
    const closeIntent = p<[validTo: number, id: number]>('UPDATE intent SET valid_to = ? WHERE id = ?');
    const insSnap = p<[domain: number, position: number, maxId: number, callers: string, data: Buffer]>(
      'INSERT OR REPLACE INTO intent_snapshots (domain, position, max_id, callers, data) VALUES (?,?,?,?,?)',
    );

    /** Rows born and not written yet, by id (in order of birth, so of id). */
    let pending = new Map<number, PendingIntent>();
    const write = (): void => {
      for (const r of pending.values()) {
        const b = r.birth;
        insIntent.run(b.id, r.domain, b.caller, toDb(b.start), toDb(b.end - 1n), r.from, r.to, b.mapPos);
      }
      pending = new Map();
    };

    return {
      apply(batch: readonly Decided[]): void {
        for (const e of batch) {
          const ch = e.intent;
          if (ch !== undefined) {
            for (const b of ch.born) pending.set(b.id, { domain: e.domain, from: e.position, to: null, birth: b });
            for (const id of ch.ended) {
              const r = pending.get(id);
              if (r !== undefined) r.to = e.position;
              else closeIntent.run(e.position, id);
            }
          }
          const snap = e.intentSnapshot;
          if (snap !== undefined) insSnap.run(e.domain, e.position, snap.maxId, JSON.stringify(snap.callers), snap.live.encode());
        }
        if (pending.size >= FLUSH_EVERY) write();
      },
      flush(): void {
        write();
      },
    };
  },
};
