/** `diff`: the runs removed and added between two points. */
import type { Queries } from '../../projections/queries.js';
import { describePage } from './words.js';

type Diff = ReturnType<Queries['diff']>;

/** The text of a diff, one line per run. */
export function diffText(d: Diff): string[] {
  return [
    `${d.domain.name}: from #${d.from} to #${d.to}: ${d.added.length} run(s) added, ${d.removed.length} removed`,
    ...d.removed.map((p) => `- ${describePage(p)}  (mapped by #${p.mappedBy}, removed at #${p.validTo})`),
    ...d.added.map((p) => `+ ${describePage(p)}  (mapped by #${p.mappedBy}, since #${p.validFrom})`),
  ];
}
