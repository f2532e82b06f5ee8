/** `history`: the events that touched a range, one row each. */
import { formatSize, hex } from '../../core/address.js';
import type { Queries, Who } from '../../projections/queries.js';
import { table } from './format.js';

type History = ReturnType<Queries['history']>;

/** The text of a history, as blocks to print one after another. `whoText` is the read layer's (loaded with it). */
export function historyText(h: History, start: bigint, end: bigint, whoText: (w: Who) => string): string[] {
  return [
    `history of ${hex(start)}..${hex(end)} in ${h.domain.name} up to event #${h.at}: ${h.events.length} event(s)`,
    table(
      ['#', 'TIME', 'EVENT', 'WHAT', 'WHO'],
      h.events.map((e) => [String(e.position), e.time ?? '', e.type, eventWhat(e.body), whoText(e.who)]),
      { right: [0] },
    ),
  ];
}

/** What an event did, from its stored body: the range, and what was mapped or unmapped. */
export function eventWhat(b: Record<string, unknown>): string {
  if (b.inferred === 'before-trace')
    return `${b.iova}+${formatSize(BigInt(b.size as string))} mapped before the trace began (inferred from the unmap after it)`;
  if (typeof b.paddr === 'string') return `${b.iova}+${formatSize(BigInt(b.size as string))} -> ${b.paddr}${b.ok ? '' : ` ${b.errno}`}`;
  if (typeof b.unmapped === 'string') {
    const req = BigInt(b.size as string);
    const got = BigInt(b.unmapped);
    return `${b.iova}+${formatSize(req)} unmapped ${formatSize(got)}${got > req ? ' (OVER-UNMAP)' : ''}${b.ok ? '' : ` ${b.errno}`}`;
  }
  if (typeof b.iova === 'string') return `${b.iova}${b.device ? ` ${b.device}` : ''}`;
  if (typeof b.device === 'string') return b.device;
  return '';
}
