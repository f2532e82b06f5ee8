/** Output for people (aligned tables) and for scripts (JSON with addresses as "0x" strings). */
import { formatSize, hex } from '../core/address.js';
import { formatProt } from '../events/prot.js';
import { BEFORE_TRACE_CALLER } from '../events/schema.js';
import type { RunColumns } from '../projections/runlog.js';

/**
 * Aligned columns, two spaces apart; columns in `right` are right-aligned, the last column is not
 * padded, and trailing blanks are trimmed. One pass for the widths, one string per line: `state`
 * prints tens of thousands of rows.
 */
export function table(headers: string[], rows: Array<Array<string | number>>, opts: { right?: number[] } = {}): string {
  const widths = headers.map((h) => h.length);
  const cells = new Array<string[]>(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    const out = new Array<string>(row.length);
    for (let i = 0; i < row.length; i++) {
      const v = row[i]!;
      const c = typeof v === 'string' ? v : String(v);
      out[i] = c;
      if (c.length > widths[i]!) widths[i] = c.length;
    }
    cells[r] = out;
  }
  const right = headers.map((_, i) => opts.right?.includes(i) ?? false);
  const line = (r: string[]): string => {
    let s = '';
    const last = r.length - 1;
    for (let i = 0; i <= last; i++) {
      const c = r[i]!;
      const w = widths[i];
      if (i) s += '  ';
      s += w === undefined ? c : right[i] ? c.padStart(w) : i === last ? c : c.padEnd(w);
    }
    return s.trimEnd();
  };
  const lines = new Array<string>(cells.length + 2);
  lines[0] = line(headers);
  lines[1] = line(widths.map((w) => '-'.repeat(w)));
  for (let r = 0; r < cells.length; r++) lines[r + 2] = line(cells[r]!);
  return lines.join('\n');
}

/** JSON with bigints as "0x" hex strings. */
export function json(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v), 2);
}

/** formatProt, made once per distinct value (a state repeats a few protections many times). */
function protTexts(): (prot: number) => string {
  const texts = new Map<number, string>();
  return (prot) => {
    let t = texts.get(prot);
    if (t === undefined) texts.set(prot, (t = formatProt(prot)));
    return t;
  };
}

/**
 * The `state` table's cells of each run, straight from the columns: IOVA, end, physical address,
 * page size, page count, protection, and the map event with its caller. (A bigint's hex text is
 * quick to make; a double's is not, and page-view objects cost more than the cells themselves.)
 */
export function runRows(c: RunColumns, callerOf: (mapPos: number) => string): string[][] {
  const sizes = new Map<number, string>();
  const protOf = protTexts();
  const rows = new Array<string[]>(c.n);
  for (let i = 0; i < c.n; i++) {
    const shift = c.shift[i]!;
    const count = c.count[i]!;
    const iova = c.iova[i]!;
    let size = sizes.get(shift);
    if (size === undefined) sizes.set(shift, (size = formatSize(1n << BigInt(shift))));
    const mapPos = c.mapPos[i]!;
    const caller = callerOf(mapPos);
    // A mapping inferred to have existed before the trace: its physical address is unknown.
    const paddr = caller === BEFORE_TRACE_CALLER ? '?' : hex(c.paddr[i]!);
    rows[i] = [hex(iova), hex(iova + (BigInt(count) << BigInt(shift))), paddr, size, String(count), protOf(c.prot[i]!), `#${mapPos} ${caller}`];
  }
  return rows;
}

/** `state --json`'s pages, straight from the columns, with addresses and sizes already as "0x" text. */
export function runJson(c: RunColumns, callerOf: (mapPos: number) => string): Array<Record<string, string | number>> {
  const protOf = protTexts();
  const pages = new Array<Record<string, string | number>>(c.n);
  for (let i = 0; i < c.n; i++) {
    const mapPos = c.mapPos[i]!;
    const caller = callerOf(mapPos);
    const page: Record<string, string | number | null> = { iova: hex(c.iova[i]!), paddr: hex(c.paddr[i]!), pageSize: hex(1n << BigInt(c.shift[i]!)), count: c.count[i]!, prot: protOf(c.prot[i]!), mappedBy: mapPos, caller };
    if (caller === BEFORE_TRACE_CALLER) {
      page.paddr = null; // unknown: inferred from the unmap that removed it
      page.inferred = 'before-trace';
    }
    pages[i] = page as Record<string, string | number>;
  }
  return pages;
}
