/** Output for people (aligned tables) and for scripts (JSON with addresses as "0x" strings). */

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
