/**
 * The compact events row (schema 9, migrations/009_compact_events.sql): which parts of an event's
 * canonical text a row may leave out because other columns say them, and how they are made again.
 *
 * The hash chain covers the canonical text, unchanged (chain.ts `envelope`). A row leaves a part
 * out only when the text `stored_events` makes again from the columns is exactly the text hashed:
 * - an id the ledger made: `@DOMAIN:VERSION` (no id of its own) or `KEY:LINE` (an imported line,
 *   KEY the first 24 hex digits of the file's SHA-256), stored as '';
 * - an imported event's origin, the last member of its data: `"from":{"source":NAME,
 *   "digest":SHA256,"line":N}`, stored as an `origins` row id and the line, when NAME is printable
 *   ASCII without `"` or `\` (so that JSON writes it as it is, and SQL can put it back by plain
 *   concatenation).
 */

/** What an imported event's origin says, as the store is told it (the ledger's `from`). */
export interface OriginParts {
  source: string;
  digest: string;
  line: number;
}

/** The id of an event with no id of its own: its place in its stream (ids given by callers cannot start with '@'). */
export function derivedId(stream: string, version: number): string {
  return `@${stream}:${version}`;
}

/** The id of an imported line with no id of its own: the file's key (24 hex digits of its SHA-256) and the line. */
export function importedId(digest: string, line: number): string {
  return `${digest.slice(0, 24)}:${line}`;
}

const KEY = /^[0-9a-f]{24}$/;
/** The last key found valid (an import asks about one file's lines, one after the other). */
let lastKey = '';

/** An id of the `KEY:LINE` form, taken apart (undefined for any other id). */
export function importedIdParts(id: string): { key: string; line: number } | undefined {
  if (id.length < 26 || id.length > 41 || id.charCodeAt(24) !== 58) return undefined;
  const key = id.slice(0, 24);
  if (key !== lastKey) {
    if (!KEY.test(key)) return undefined;
    lastKey = key;
  }
  const digits = id.slice(25);
  const line = Number(digits);
  // Only the digits the ledger writes (`${line}`): no sign, point, exponent or leading zero.
  return Number.isSafeInteger(line) && line >= 0 && String(line) === digits ? { key, line } : undefined;
}

const PLAIN_NAME = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const DIGEST = /^[0-9a-f]{64}$/;

/**
 * The text an origin adds at the end of an event's data (from `,"from":` to the data's closing
 * brace), as JSON.stringify writes it and `stored_events` makes it again; undefined when the two
 * could differ (other members, another order, a name JSON would escape), so the origin stays in
 * the data.
 */
function originSuffix(o: Readonly<Record<string, unknown>>): string | undefined {
  let i = 0;
  for (const k in o) if (k !== ORIGIN_KEYS[i++]) return undefined;
  if (i !== 3) return undefined;
  const { source, digest, line } = o;
  if (typeof source !== 'string' || typeof digest !== 'string') return undefined;
  if (plain === undefined || source !== plain.source || digest !== plain.digest) {
    if (!PLAIN_NAME.test(source) || !DIGEST.test(digest)) return undefined;
    plain = { source, digest };
  }
  if (typeof line !== 'number' || !Number.isSafeInteger(line) || line < 0) return undefined;
  return `,"from":{"source":"${source}","digest":"${digest}","line":${line}}}`;
}
const ORIGIN_KEYS = ['source', 'digest', 'line'];
/** The last name and digest found plain (an import's events all name one file). */
let plain: { source: string; digest: string } | undefined;

/** How one event is stored, and the data text its hash covers. */
export interface CompactRow {
  /** The id and data columns (the parts `stored_events` makes again left out). */
  id: string;
  data: string;
  /** The data as the chain covers it: `data`, with the origin when it was taken out. */
  hashed: string;
  /** The origin taken out of the data, when it was (the store gives it its `origins` row). */
  origin: OriginParts | null;
}

/**
 * The columns of an event as the store writes them. `data` is the event's data without its origin
 * (JSON text of an object); `from` is the origin, the data's last member, when it has one.
 */
export function compactRow(e: { stream: string; version: number; id: string; data: string; from?: Readonly<Record<string, unknown>> }): CompactRow {
  const from = e.from;
  if (from === undefined) return { id: e.id === derivedId(e.stream, e.version) ? '' : e.id, data: e.data, hashed: e.data, origin: null };
  const head = e.data.slice(0, e.data.length - 1);
  const suffix = originSuffix(from);
  if (suffix === undefined) {
    const whole = `${head},"from":${JSON.stringify(from)}}`;
    return { id: e.id === derivedId(e.stream, e.version) ? '' : e.id, data: whole, hashed: whole, origin: null };
  }
  const o = from as unknown as OriginParts;
  return { id: e.id === importedId(o.digest, o.line) ? '' : e.id, data: e.data, hashed: `${head}${suffix}`, origin: o };
}
