import { describe, expect, it } from 'vitest';
import {
  AddressError,
  alignmentOf,
  coalesceRanges,
  ffs,
  fls,
  formatSize,
  hex,
  hex64,
  isAligned,
  isPowerOfTwo,
  parseAddress,
  parseSize,
  subtractRanges,
  U64_MAX,
} from '../../src/core/address.js';

describe('parseAddress', () => {
  it('reads hex, decimal, binary and octal, with underscores between digits', () => {
    expect(parseAddress('0x1000')).toBe(0x1000n);
    expect(parseAddress('0XFFFF_0000')).toBe(0xffff0000n);
    expect(parseAddress('4096')).toBe(4096n);
    expect(parseAddress('1_048_576')).toBe(1n << 20n);
    expect(parseAddress('0b1000000000000')).toBe(4096n);
    expect(parseAddress('0o10000')).toBe(4096n);
    expect(parseAddress('  0x10  ')).toBe(16n);
  });

  it('takes bigints and safe integers as they are', () => {
    expect(parseAddress(0xfedcba9876543210n)).toBe(0xfedcba9876543210n);
    expect(parseAddress(2 ** 53 - 1)).toBe(2n ** 53n - 1n);
  });

  it('keeps all 64 bits exactly (no detour through a double)', () => {
    expect(parseAddress('0xffffffffffffffff')).toBe(U64_MAX);
    expect(parseAddress('18446744073709551615')).toBe(U64_MAX);
    // 2^53 + 1 is not representable as a double; as a string it stays exact.
    expect(parseAddress('9007199254740993')).toBe(9007199254740993n);
  });

  it('rejects values beyond 64 bits, saying so', () => {
    expect(() => parseAddress('0x1_0000_0000_0000_0000')).toThrow(/does not fit in 64 bits/);
    expect(() => parseAddress('18446744073709551616')).toThrow(/does not fit in 64 bits/);
    expect(() => parseAddress(1n << 64n)).toThrow(AddressError);
  });

  it('rejects negatives, inexact numbers, empty and malformed text, naming the field', () => {
    expect(() => parseAddress('-1')).toThrow(/negative/);
    expect(() => parseAddress(-4096)).toThrow(/negative/);
    expect(() => parseAddress(2 ** 53 + 2)).toThrow(/not an exact integer/);
    expect(() => parseAddress(1.5)).toThrow(/not an exact integer/);
    expect(() => parseAddress('')).toThrow(/empty/);
    expect(() => parseAddress('0x')).toThrow(/not a number/);
    expect(() => parseAddress('0xg00')).toThrow(/not a number/);
    expect(() => parseAddress('0x_10')).toThrow(/not a number/);
    expect(() => parseAddress('4K')).toThrow(/not a number/); // suffixes are for sizes only
    const e = (() => {
      try {
        parseAddress('zz', 'iova');
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(AddressError);
    expect((e as AddressError).field).toBe('iova');
    expect((e as AddressError).message).toMatch(/^iova: "zz" is not a number/);
  });
});

describe('parseSize', () => {
  it('reads binary suffixes, in decimal or hex, with or without a space', () => {
    expect(parseSize('4K')).toBe(4096n);
    expect(parseSize('4k')).toBe(4096n);
    expect(parseSize('64KiB')).toBe(65536n);
    expect(parseSize('2M')).toBe(2n << 20n);
    expect(parseSize('2MB')).toBe(2n << 20n);
    expect(parseSize('1 GiB')).toBe(1n << 30n);
    expect(parseSize('1T')).toBe(1n << 40n);
    expect(parseSize('1P')).toBe(1n << 50n);
    expect(parseSize('15E')).toBe(15n << 60n);
    expect(parseSize('0x10K')).toBe(0x10n << 10n);
    expect(parseSize('512B')).toBe(512n);
    // A trailing B in hex is a digit, not "bytes".
    expect(parseSize('0x10B')).toBe(0x10bn);
  });

  it('reads plain numbers like parseAddress', () => {
    expect(parseSize('0x200000')).toBe(0x200000n);
    expect(parseSize(4096)).toBe(4096n);
    expect(parseSize(1n << 30n)).toBe(1n << 30n);
  });

  it('rejects an unknown suffix by name', () => {
    expect(() => parseSize('4X')).toThrow(/unknown size suffix "X"/);
    expect(() => parseSize('4KQ', 'size')).toThrow(/^size: unknown size suffix "KQ"/);
    expect(() => parseSize('0x1ffz')).toThrow(/unknown size suffix "z"/);
  });

  it('rejects sizes that overflow 64 bits once the suffix is applied', () => {
    expect(() => parseSize('16E')).toThrow(/does not fit in 64 bits/);
    expect(() => parseSize('0x4000000000000000K')).toThrow(/does not fit in 64 bits/);
  });

  it('rejects what is not a number at all', () => {
    expect(() => parseSize('1.5M')).toThrow(/not a number/);
    expect(() => parseSize('K')).toThrow(/not a number/);
    expect(() => parseSize('-4K')).toThrow(AddressError);
  });
});

describe('formatting', () => {
  it('hex and hex64 print lower-case, hex64 padded like %016llx', () => {
    expect(hex(0xabcn)).toBe('0xabc');
    expect(hex(0n)).toBe('0x0');
    expect(hex64(0x1000n)).toBe('0x0000000000001000');
    expect(hex64(U64_MAX)).toBe('0xffffffffffffffff');
  });

  it('formatSize uses the largest exact binary unit, else hex', () => {
    expect(formatSize(0n)).toBe('0');
    expect(formatSize(512n)).toBe('512');
    expect(formatSize(4096n)).toBe('4K');
    expect(formatSize(3n << 10n)).toBe('3K');
    expect(formatSize(1n << 20n)).toBe('1M');
    expect(formatSize(1536n << 20n)).toBe('1536M');
    expect(formatSize(1n << 30n)).toBe('1G');
    expect(formatSize(1n << 63n)).toBe('8E');
    expect(formatSize(0x1800n)).toBe('6K');
    expect(formatSize(0x1801n)).toBe('0x1801');
  });
});

describe('bit helpers', () => {
  it('isPowerOfTwo, ffs, fls and alignmentOf agree on 64-bit values', () => {
    expect(isPowerOfTwo(0n)).toBe(false);
    expect(isPowerOfTwo(1n)).toBe(true);
    expect(isPowerOfTwo(0x3000n)).toBe(false);
    expect(isPowerOfTwo(1n << 63n)).toBe(true);
    expect(ffs(0x1000n)).toBe(12);
    expect(ffs(0x40201000n)).toBe(12);
    expect(ffs(1n << 63n)).toBe(63);
    expect(fls(0x40201000n)).toBe(30);
    expect(fls(U64_MAX)).toBe(63);
    expect(() => ffs(0n)).toThrow(RangeError);
    expect(() => fls(0n)).toThrow(RangeError);
    expect(alignmentOf(0x1ff000n)).toBe(0x1000n);
    expect(alignmentOf(0x40000000n)).toBe(0x40000000n);
    expect(alignmentOf(0n)).toBe(1n << 64n); // address 0 is aligned to every page
    expect(isAligned(0x200000n, 0x200000n)).toBe(true);
    expect(isAligned(0x201000n, 0x200000n)).toBe(false);
  });
});

describe('ranges', () => {
  const r = (start: bigint, end: bigint) => ({ start, end });

  it('subtractRanges leaves what the cuts do not cover', () => {
    expect(subtractRanges(r(0n, 100n), [])).toEqual([r(0n, 100n)]);
    expect(subtractRanges(r(0n, 100n), [r(10n, 20n), r(30n, 40n)])).toEqual([r(0n, 10n), r(20n, 30n), r(40n, 100n)]);
    expect(subtractRanges(r(10n, 50n), [r(0n, 20n), r(40n, 60n)])).toEqual([r(20n, 40n)]);
    expect(subtractRanges(r(10n, 50n), [r(0n, 60n)])).toEqual([]);
    expect(subtractRanges(r(10n, 50n), [r(0n, 5n), r(60n, 70n)])).toEqual([r(10n, 50n)]);
    // Overlapping cuts.
    expect(subtractRanges(r(0n, 100n), [r(10n, 30n), r(20n, 25n), r(28n, 40n)])).toEqual([r(0n, 10n), r(40n, 100n)]);
  });

  it('coalesceRanges merges touching and overlapping ranges and does not alias its input', () => {
    const input = [r(0n, 10n), r(10n, 20n), r(15n, 18n), r(30n, 40n), r(35n, 50n)];
    const out = coalesceRanges(input);
    expect(out).toEqual([r(0n, 20n), r(30n, 50n)]);
    out[0]!.end = 999n;
    expect(input[0]).toEqual(r(0n, 10n));
    expect(coalesceRanges([])).toEqual([]);
  });
});
