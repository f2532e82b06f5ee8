/**
 * How the over-unmaps stored after a position were judged (core/stepping.ts): the counts for the
 * summaries of `apply` and `import` (`cli/render/verdicts.ts` words them). Pending ones (no later
 * unmap by their caller yet) count as harmful until a later event shows otherwise.
 */
import type { Ledger } from './ledger.js';

export interface VerdictCounts {
  stepped: number;
  harmful: number;
  pending: number;
}

export function overUnmapVerdicts(ledger: Ledger, after: number): VerdictCounts {
  // The findings as of the last event: a ledger that defers its projections writes them first.
  ledger.projectNow();
  const rows = ledger.db
    .prepare<[after: number], { step: string; n: number }>(
      'SELECT step, count(*) AS n FROM unmap_findings WHERE position > ? AND step IS NOT NULL GROUP BY step',
    )
    .all(after);
  const c: VerdictCounts = { stepped: 0, harmful: 0, pending: 0 };
  for (const r of rows) if (r.step === 'stepped' || r.step === 'harmful' || r.step === 'pending') c[r.step] = r.n;
  return c;
}
