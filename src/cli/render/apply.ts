/** `apply`: the one-line summary of a run. */
import { verdictCountsText } from './verdicts.js';
import type { ApplySummary } from '../apply.js';

export function applyText(s: ApplySummary, db: string): string {
  return (
    `${s.source}: ${s.commands} commands, ${s.stored} stored, ${s.duplicates} already in the ledger` +
    (s.rejected ? `, ${s.rejected} refused by the domain (stored with their errno)` : '') +
    `; ${s.overUnmaps} over-unmap(s)${verdictCountsText(s.verdicts)}, ${s.leftMapped} unmap(s) left pages mapped. Ledger: ${db}`
  );
}
