import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeIntent, IntentWriter } from '../../src/projections/intentsnap.js';

const entry = fc.record({
  id: fc.integer({ min: 1, max: 2 ** 53 - 1 }),
  first: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  len: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  mapPos: fc.integer({ min: 1, max: 2 ** 53 - 1 }),
  caller: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
});

describe('intent snapshot blobs', () => {
  it('decode gives back every field written, from aligned and unaligned bytes', () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 40, size: 'max' }), fc.integer({ min: 1, max: 7 }), (es, shift) => {
        const w = new IntentWriter(es.length);
        // last = first + len, clamped to the top of the address space (a range may end at 2^64).
        const lastOf = (e: (typeof es)[number]) => (e.first + e.len > 2n ** 64n - 1n ? 2n ** 64n - 1n : e.first + e.len);
        for (const e of es) w.push(e.id, e.first, lastOf(e), e.mapPos, e.caller);
        const buf = w.encode();
        const want = es.map((e) => [e.id, e.first, lastOf(e), e.mapPos, e.caller]);
        const rows = (c: ReturnType<typeof decodeIntent>) => Array.from({ length: c.n }, (_, i) => [c.id[i], c.first[i], c.last[i], c.mapPos[i], c.caller[i]]);
        expect(rows(decodeIntent(buf))).toEqual(want);
        // The same bytes at an odd offset (as a blob may come from SQLite): copied, same values.
        const odd = new Uint8Array(buf.length + shift);
        odd.set(buf, shift);
        expect(rows(decodeIntent(odd.subarray(shift)))).toEqual(want);
      }),
    );
  });

  it('refuses a writer that is given more or fewer intervals than announced, and blobs of another format or length', () => {
    const w = new IntentWriter(1);
    expect(() => w.encode()).toThrow(/0 intervals of the 1 announced/);
    w.push(1, 0n, 0xfffn, 1, 0);
    expect(() => w.push(2, 0n, 0xfffn, 1, 0)).toThrow(/more than the 1 intervals announced/);
    const buf = w.encode();
    expect(() => decodeIntent(buf.subarray(0, buf.length - 1))).toThrow(/bytes for 1 entries/);
    const other = Buffer.from(buf);
    other.writeUInt32LE(0x52554e31, 0);
    expect(() => decodeIntent(other)).toThrow(/not a blob of this format/);
    expect(() => decodeIntent(new Uint8Array(4))).toThrow(/is shorter than its 8-byte header/);
  });
});
