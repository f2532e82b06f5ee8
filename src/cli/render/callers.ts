/** `callers`: the table of callers and sites, and what each site that is not yet symmetric does. */
import { formatSize } from '../../core/address.js';
import type { CallerView, UnmapExample } from '../../projections/callers.js';
import { table } from './format.js';

/** One row per caller and call site: how its unmaps relate to its maps. */
export function callersTable(c: CallerView[]): string {
  return table(
    ['DOMAIN', 'CALLER', 'SITE', 'MAPS', 'UNMAPS', 'EXACT', 'WHOLE MAPS', 'CUTS', 'STRADDLES', 'MISSES', "OTHERS'", 'READY'],
    c.map((x) => [
      x.domain,
      x.caller,
      x.site,
      x.maps,
      x.unmaps,
      x.exact,
      x.spans,
      x.cuts,
      x.straddles,
      x.misses,
      x.foreign,
      `${Math.round(x.readiness * 100)}%`,
    ]),
    { right: [3, 4, 5, 6, 7, 8, 9, 10, 11] },
  );
}

/**
 * The notes below the table on a site that unmaps other than whole maps (none for one that is
 * ready), as blocks to print one after another: the verdict, the outcome under each unmap
 * behaviour, the worst examples, the change to make. `exampleText` is the caller analysis's own.
 */
export function callerNotes(x: CallerView, exampleText: (e: UnmapExample) => string): string[] {
  if (x.exact + x.spans === x.unmaps && !x.foreign && !x.behaviours.legacy.leftMapped) return [];
  const b = x.behaviours;
  const blocks = [
    '',
    `${x.caller}${x.site ? ` at ${x.site}` : ''} (domain ${x.domain}): ${x.verdict.join('; ')}.`,
    `  under legacy: ${b.legacy.overUnmaps} over-unmap (${formatSize(b.legacy.overBytes)}), ${b.legacy.leftMapped} leave mapped (${formatSize(b.legacy.leftBytes)});` +
      ` split: ${b.split.overUnmaps} over, ${b.split.leftMapped} leave mapped; strict: ${b.strict.refused} refused`,
  ];
  for (const e of x.examples) blocks.push(`  ${exampleText(e)}`);
  if (x.advice) blocks.push(`  change: ${x.advice}`);
  return blocks;
}
