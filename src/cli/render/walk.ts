/** `walk`: the page-table walk of one IOVA, level by level. */
import { formatSize, hex } from '../../core/address.js';
import type { Queries } from '../../projections/queries.js';
import { table } from './format.js';

type Walk = ReturnType<Queries['walk']>;

/** `walk --json`: each step names the map event of its run instead of holding the run. */
export function walkJson(w: Walk, iova: bigint): unknown {
  return {
    domain: w.domain.name,
    at: w.at,
    iova,
    ...(w.outside ? { outside: true } : {}),
    steps: w.steps.map((s) => ({ ...s, run: undefined, mappedBy: s.run?.origin.ref })),
  };
}

/** The text of a walk, as blocks to print one after another. */
export function walkText(w: Walk, iova: bigint): string[] {
  if (w.outside) {
    const bits = w.domain.profile.iovaBits;
    return [
      `${hex(iova)} is beyond the ${bits}-bit IOVA space of ${w.domain.name} (which ends at ${hex((1n << BigInt(bits)) - 1n)}): no page-table walk reaches it, and a DMA there faults.`,
    ];
  }
  const blocks = [
    `walk of ${hex(iova)} in ${w.domain.name} (${w.domain.profile.format.name}) as of event #${w.at}:`,
    table(
      ['LEVEL', 'INDEX', 'ENTRY', 'OUTPUT'],
      w.steps.map((s) => [
        s.levelName,
        String(s.index),
        s.kind === 'page' ? `page ${formatSize(s.pageSize!)}${s.repeat! > 1 ? ` (entry ${s.repeatIndex! + 1} of ${s.repeat} repeated)` : ''}` : s.kind,
        s.output !== undefined ? `${hex(s.output)} (mapped by #${s.run!.origin.ref})` : '',
      ]),
    ),
  ];
  const last = w.steps[w.steps.length - 1];
  if (last?.kind === 'invalid')
    blocks.push(`${hex(iova)} is not mapped: the walk ends at an invalid ${last.levelName} entry (an access here is an IO page fault).`);
  return blocks;
}
