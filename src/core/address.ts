/**
 * 64-bit unsigned addresses and sizes. Everything is `bigint`; nothing here ever goes
 * through a JavaScript number, so no precision is lost.
 */

import { LedgerFault } from './errors.js';

export const U64_MAX = (1n << 64n) - 1n;

/** An input value that is not a valid address or size. `field` names what was being read. */
export class AddressError extends LedgerFault {
  readonly exitCode = 2;
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(field ? `${field}: ${message}` : message);
    this.name = 'AddressError';
  }
}

const SUFFIX_SHIFT: Record<string, bigint> = {
  '': 0n,
  K: 10n,
  KB: 10n,
  KIB: 10n,
  M: 20n,
  MB: 20n,
  MIB: 20n,
  G: 30n,
  GB: 30n,
  GIB: 30n,
  T: 40n,
  TB: 40n,
  TIB: 40n,
  P: 50n,
  PB: 50n,
  PIB: 50n,
  E: 60n,
  EB: 60n,
  EIB: 60n,
};

function checkRange(v: bigint, text: string, field?: string): bigint {
  if (v < 0n) throw new AddressError(`${text} is negative; addresses and sizes are unsigned`, field);
  if (v > U64_MAX) throw new AddressError(`${text} does not fit in 64 bits (max 0xffffffffffffffff)`, field);
  return v;
}

const FAST_HEX = /^0[xX][0-9a-fA-F]{1,16}$/;
const FAST_DEC = /^[0-9]{1,19}$/;

/**
 * `0x` and 1 to 13 hex digits (what FAST_HEX matches, short enough to be exact as a number:
 * below 2^52), read without a regex; undefined for anything else.
 */
function shortHex(s: string): bigint | undefined {
  const n = s.length;
  if (n < 3 || n > 15 || s.charCodeAt(0) !== 48) return undefined;
  const x = s.charCodeAt(1);
  if (x !== 120 && x !== 88) return undefined;
  let v = 0;
  for (let i = 2; i < n; i++) {
    const c = s.charCodeAt(i);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else return undefined;
    v = v * 16 + d;
  }
  return BigInt(v);
}

/**
 * Parses an address: `0x` hex, `0b` binary, `0o` octal or decimal, as a string, a bigint or a
 * safe integer number. Underscores between digits are allowed (`0xffff_0000`).
 */
export function parseAddress(input: string | number | bigint, field?: string): bigint {
  if (typeof input === 'bigint') return checkRange(input, `0x${input.toString(16)}`, field);
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input)) {
      throw new AddressError(`${input} is not an exact integer (numbers above 2^53 lose precision: pass a "0x..." string)`, field);
    }
    return checkRange(BigInt(input), String(input), field);
  }
  // Fast paths: plain hex of at most 16 digits, or decimal of at most 19 digits, always fit.
  const short = shortHex(input);
  if (short !== undefined) return short;
  if (FAST_HEX.test(input) || FAST_DEC.test(input)) return BigInt(input);
  const text = input.trim();
  if (text === '') throw new AddressError('empty value', field);
  if (text.startsWith('-')) throw new AddressError(`${JSON.stringify(input)} is negative; addresses and sizes are unsigned`, field);
  const m = /^(0[xX][0-9a-fA-F](?:_?[0-9a-fA-F])*|0[bB][01](?:_?[01])*|0[oO][0-7](?:_?[0-7])*|[0-9](?:_?[0-9])*)$/.exec(text);
  if (!m) throw new AddressError(`${JSON.stringify(input)} is not a number (expected 0x hex or decimal)`, field);
  return checkRange(BigInt(text.replace(/_/g, '')), JSON.stringify(input), field);
}

/**
 * Parses a size: everything `parseAddress` takes, plus a decimal or hex number with a binary
 * suffix: `4K`, `64KiB`, `2M`, `2MB`, `1G`, `1 GiB`, `0x10K`. Suffixes are powers of 1024
 * (sizes of pages and mappings are binary in every IOMMU).
 */
export function parseSize(input: string | number | bigint, field?: string): bigint {
  if (typeof input !== 'string') return parseAddress(input, field);
  const short = shortHex(input);
  if (short !== undefined) return short;
  if (FAST_HEX.test(input) || FAST_DEC.test(input)) return parseAddress(input, field);
  const text = input.trim();
  // Any letters after the number are a suffix, so that a wrong one is reported as such.
  const m = /^(0[xX][0-9a-fA-F_]+|[0-9_]+)\s*([a-zA-Z]+)?$/.exec(text);
  if (!m || m[2] === undefined) return parseAddress(input, field);
  const unit = m[2].toUpperCase();
  const base = parseAddress(m[1] ?? '', field);
  if (unit === 'B') return base;
  const shift = SUFFIX_SHIFT[unit];
  if (shift === undefined) throw new AddressError(`unknown size suffix ${JSON.stringify(m[2])}`, field);
  return checkRange(base << shift, JSON.stringify(input), field);
}

/** `0x` followed by lower-case hex, no padding. */
export function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** `0x` followed by 16 hex digits, as the kernel's `%016llx`. */
export function hex64(v: bigint): string {
  return `0x${v.toString(16).padStart(16, '0')}`;
}

const SIZE_UNITS: Array<[bigint, string]> = [
  [60n, 'E'],
  [50n, 'P'],
  [40n, 'T'],
  [30n, 'G'],
  [20n, 'M'],
  [10n, 'K'],
];

/** A size for people: `4K`, `2M`, `1G` when exact, else `0x` hex (`0x1800`). */
export function formatSize(v: bigint): string {
  if (v === 0n) return '0';
  for (const [shift, unit] of SIZE_UNITS) {
    const unitSize = 1n << shift;
    if (v >= unitSize && v % unitSize === 0n) return `${v >> shift}${unit}`;
  }
  return v < 1024n ? `${v}` : hex(v);
}

export function isPowerOfTwo(v: bigint): boolean {
  return v > 0n && (v & (v - 1n)) === 0n;
}

/** Index of the lowest set bit (v must be non-zero). */
export function ffs(v: bigint): number {
  if (v === 0n) throw new RangeError('ffs(0)');
  let n = 0;
  let x = v;
  while ((x & 0xffffffffn) === 0n) {
    x >>= 32n;
    n += 32;
  }
  while ((x & 1n) === 0n) {
    x >>= 1n;
    n += 1;
  }
  return n;
}

/** Index of the highest set bit (v must be non-zero). */
export function fls(v: bigint): number {
  if (v === 0n) throw new RangeError('fls(0)');
  return v.toString(2).length - 1;
}

/** Largest power of two that divides v; for v = 0 (aligned to everything) returns 2^64. */
export function alignmentOf(v: bigint): bigint {
  if (v === 0n) return 1n << 64n;
  return v & -v;
}

export function isAligned(v: bigint, align: bigint): boolean {
  return (v & (align - 1n)) === 0n;
}

/** A half-open range [start, end) of the 64-bit space; end may be 2^64. */
export interface Range {
  start: bigint;
  end: bigint;
}

export function rangeSize(r: Range): bigint {
  return r.end - r.start;
}

/** Subtracts a sorted list of disjoint ranges from `r`: what of `r` they do not cover. */
export function subtractRanges(r: Range, cut: readonly Range[]): Range[] {
  const out: Range[] = [];
  let cursor = r.start;
  for (const c of cut) {
    if (c.end <= cursor || c.start >= r.end) continue;
    if (c.start > cursor) out.push({ start: cursor, end: c.start });
    if (c.end > cursor) cursor = c.end;
    if (cursor >= r.end) break;
  }
  if (cursor < r.end) out.push({ start: cursor, end: r.end });
  return out;
}

/** Merges touching or overlapping ranges of a list sorted by start. */
export function coalesceRanges(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const r of ranges) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end) {
      if (r.end > last.end) last.end = r.end;
    } else {
      out.push({ start: r.start, end: r.end });
    }
  }
  return out;
}
