/** The phrases several renderers share: a page (or run of pages), a caller, a range. */
import { formatSize, hex } from '../../core/address.js';
import type { Who } from '../../events/decode.js';
import { formatProt } from '../../events/prot.js';
import type { PageView } from '../../projections/queries.js';

/** The article before a size as it is read aloud: an 8K, an 80K, an 18M page; a 4K, a 16K, a 110K page. */
export function anOrA(size: string): 'a' | 'an' {
  return /^8|^(11|18)(\D|$)/.test(size) ? 'an' : 'a';
}

/** A run of pages: "an 8K page at 0x2000..0x4000 -> 0x104000 (rw)", "2 8K pages at …". */
export function describePage(p: PageView): string {
  const bytes = p.pageSize * p.count;
  const pages = p.count === 1n ? `${anOrA(formatSize(p.pageSize))} ${formatSize(p.pageSize)} page` : `${p.count} ${formatSize(p.pageSize)} pages`;
  return `${pages} at ${hex(p.iova)}..${hex(p.iova + bytes)} -> ${hex(p.paddr)} (${formatProt(p.prot)})`;
}

/** Who issued a command: the caller (or task), its site, and the task and pid when they add something. */
export function whoText(w: Who): string {
  const parts: string[] = [w.caller ?? (w.task ? `${w.task}` : 'an unknown caller')];
  if (w.site) parts.push(`at ${w.site}`);
  if (w.task && w.caller && w.task !== w.caller) parts.push(`(task ${w.task}${w.pid !== undefined ? `, pid ${w.pid}` : ''})`);
  else if (w.task && w.caller && w.pid !== undefined) parts.push(`(pid ${w.pid})`);
  else if (w.pid !== undefined) parts.push(`(pid ${w.pid})`);
  return parts.join(' ');
}

/** A range as `0x…+SIZE`. */
export function rangeText(iova: bigint, size: bigint): string {
  return `${hex(iova)}+${formatSize(size)}`;
}
