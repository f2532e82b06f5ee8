/** `diff`: the runs removed and added between two points. */
import type { PageView, Queries } from '../../projections/queries.js';

type Diff = ReturnType<Queries['diff']>;

/** The text of a diff, one line per run (`describePage` is the read layer's, loaded with it). */
export function diffText(d: Diff, describePage: (p: PageView) => string): string[] {
  return [
    `${d.domain.name}: from #${d.from} to #${d.to}: ${d.added.length} run(s) added, ${d.removed.length} removed`,
    ...d.removed.map((p) => `- ${describePage(p)}  (mapped by #${p.mappedBy}, removed at #${p.validTo})`),
    ...d.added.map((p) => `+ ${describePage(p)}  (mapped by #${p.mappedBy}, since #${p.validFrom})`),
  ];
}
