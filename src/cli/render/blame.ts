/** `blame`: what made the page at an IOVA what it is, and the lifetimes of that page before. */
import { hex } from '../../core/address.js';
import type { BlameView } from '../../projections/queries.js';
import { table } from './format.js';
import { describePage, whoText } from './words.js';

/** The text of a blame, as blocks to print one after another. */
export function blameText(b: BlameView): string[] {
  const blocks = [
    b.page
      ? `${hex(b.iova)} is mapped as of #${b.at}: ${describePage(b.page)}, by event #${b.cause!.position} (${b.cause!.body.inferred === 'before-trace' ? 'mapped before the trace began: inferred, physical address unknown' : whoText(b.cause!.who)})`
      : b.cause
        ? `${hex(b.iova)} is not mapped as of #${b.at}: removed by event #${b.cause.position} (${b.cause.type}, ${whoText(b.cause.who)})`
        : `${hex(b.iova)} was never mapped up to #${b.at}`,
  ];
  if (b.chain.length) {
    blocks.push(
      table(
        ['FROM', 'TO', 'PAGES', 'MAPPED BY', 'ENDED BY'],
        b.chain.map((c) => [
          `#${c.began.position}`,
          c.ended ? `#${c.ended.position}` : 'live',
          describePage(c.page),
          `#${c.page.mappedBy}`,
          c.ended ? `${c.ended.type} by ${whoText(c.ended.who)}` : '',
        ]),
      ),
    );
  }
  return blocks;
}
