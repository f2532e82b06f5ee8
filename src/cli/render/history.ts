/** `history`: the events that touched a range, one row each. */
import { formatSize, hex } from '../../core/address.js';
import type { Queries } from '../../projections/queries.js';
import { decodeBody, type EventType } from '../../events/decode.js';
import { table } from './format.js';
import { whoText } from './words.js';

type History = ReturnType<Queries['history']>;

/** The text of a history, as blocks to print one after another. */
export function historyText(h: History, start: bigint, end: bigint): string[] {
  return [
    `history of ${hex(start)}..${hex(end)} in ${h.domain.name} up to event #${h.at}: ${h.events.length} event(s)`,
    table(
      ['#', 'TIME', 'EVENT', 'WHAT', 'WHO'],
      h.events.map((e) => [String(e.position), e.time ?? '', e.type, eventWhat(e.type, e.body), whoText(e.who)]),
      { right: [0] },
    ),
  ];
}

/** What an event did, from its stored body (decoded): the range, and what was mapped or unmapped. */
export function eventWhat(type: string, stored: Record<string, unknown>): string {
  const ev = decodeBody(type as EventType, stored);
  switch (ev.type) {
    case 'map': {
      const b = ev.body;
      if (b.inferred === 'before-trace') return `${hex(b.iova)}+${formatSize(b.size)} mapped before the trace began (inferred from the unmap after it)`;
      return `${hex(b.iova)}+${formatSize(b.size)} -> ${hex(b.paddr)}${b.ok ? '' : ` ${b.errno}`}`;
    }
    case 'unmap': {
      const b = ev.body;
      return `${hex(b.iova)}+${formatSize(b.size)} unmapped ${formatSize(b.unmapped)}${b.unmapped > b.size ? ' (OVER-UNMAP)' : ''}${b.ok ? '' : ` ${b.errno}`}`;
    }
    case 'fault':
      return `${hex(ev.body.iova)}${ev.body.device ? ` ${ev.body.device}` : ''}`;
    case 'device-attached':
    case 'device-detached':
      return ev.body.device;
    default:
      return '';
  }
}
