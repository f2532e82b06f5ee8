/**
 * The fast paths of the core and of command validation give what the general paths give:
 * - parseCommand's hand-written path for map/unmap/fault gives zod's output exactly (keys, their
 *   order, undefined kept) and leaves every error to zod;
 * - the table accounting on numbers (addresses below 2^53) and on bigints (above) agree, and the
 *   B+ trees order number and bigint keys as the addresses they stand for;
 * - splitRegion's precomputed size tables give the kernel's page loop for any 64-bit bitmap.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Domain, type HwDelta, type Run } from '../../src/core/domain.js';
import { IntervalSet } from '../../src/core/intervals.js';
import { customProfile } from '../../src/core/profile-spec.js';
import { splitRegion, splitRegionPagewise } from '../../src/core/split.js';
import { Command, parseCommand } from '../../src/events/schema.js';

const K = 1n << 10n;
const M = 1n << 20n;

/** Keys in order with their values: what toEqual does not compare (order, undefined values). */
const entries = (o: object): Array<[string, unknown]> => Object.entries(o);

describe('parseCommand fast path', () => {
  /** Mostly valid values, sometimes not. */
  const v = <T>(good: readonly T[], bad: readonly unknown[]) =>
    fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...good) }, { weight: 1, arbitrary: fc.constantFrom(...bad) });
  const badAddr = ['0x10000000000000000', '-1', 'zz', '', -1, 1.5, 2 ** 53, -1n, 1n << 64n, true, null, undefined];
  const addr = v(
    ['0x1000', '0X2000', '0x0', '4096', '0b1000000000000', '0x1_000', ' 0x3000 ', '0xfffffffffffff000', '0xffffffffffffffff', 4096, 0, 4096n],
    badAddr,
  );
  const size = v(['0x1000', '4096', '4K', '2 MiB', '0x10K', '1g', '4B', 8192, 4096n], ['4Q', ...badAddr]);
  const str = (max: number) => v(['', 'a', 'vfio', 'x'.repeat(max), undefined], ['x'.repeat(max + 1), 3]);
  const count = v([0, 7, -0, 2 ** 53 - 1, undefined], [-1, 1.5, 2 ** 53, '1']);
  const raw = fc.record(
    {
      op: fc.constantFrom('map', 'unmap', 'fault', 'map', 'unmap', 'map', 'unmap', 'attach', 'nope'),
      domain: v(['d', 'bench', 'x'.repeat(200)], ['', 'a b', 'x'.repeat(201), 7]),
      iova: addr,
      paddr: addr,
      size,
      prot: v(['rw', 'r', '', 'rwx', 3, 0, 255, undefined], ['rz', 256, 1n]),
      observedUnmapped: size,
      device: str(200),
      driver: str(200),
      flags: count,
      caller: str(200),
      site: str(500),
      task: str(200),
      pid: count,
      tgid: count,
      cpu: count,
      time: str(64),
      id: v(['a', 'x'.repeat(200), 'a@', undefined], ['', '@a', 'x'.repeat(201)]),
      extra: fc.constant(1),
    },
    { requiredKeys: ['op'] },
  );
  // Mostly plausible commands: the keys of their op only.
  const known: Record<string, string[]> = {
    map: ['iova', 'paddr', 'size', 'prot'],
    unmap: ['iova', 'size', 'observedUnmapped'],
    fault: ['iova', 'device', 'driver', 'flags'],
  };
  const prov = ['caller', 'site', 'task', 'pid', 'tgid', 'cpu', 'time', 'id'];
  const required = ['domain', 'iova', 'paddr', 'size'];
  const input = fc.tuple(raw, fc.nat(9), fc.boolean(), fc.boolean()).map(([r, mode, nullProto, reversed]) => {
    const o: Record<string, unknown> = {};
    const keep = new Set(['op', 'domain', ...(known[r.op as string] ?? []), ...prov]);
    const keys = Object.keys(r).filter((k) => mode === 0 || (keep.has(k) && (mode > 1 || !required.includes(k))));
    // The required keys of the op (fc.record may have left them out).
    if (mode > 1) for (const k of required) if (keep.has(k) && !keys.includes(k)) keys.push(k);
    for (const k of reversed ? keys.reverse() : keys) o[k] = k in r ? r[k as keyof typeof r] : k === 'domain' ? 'd' : '0x1000';
    return nullProto ? Object.assign(Object.create(null) as object, o) : o;
  });

  it('gives zod’s output for what it accepts and zod’s failure for the rest', () => {
    let valid = 0;
    fc.assert(
      fc.property(input, (x) => {
        const z = Command.safeParse(x);
        if (z.success) {
          valid++;
          expect(entries(parseCommand(x))).toEqual(entries(z.data));
        } else expect(() => parseCommand(x)).toThrow();
      }),
      { numRuns: 10_000 },
    );
    expect(valid).toBeGreaterThan(1500); // the generator makes both kinds
  });

  it('keeps the error messages', () => {
    const err = (x: unknown) => {
      try {
        parseCommand(x);
      } catch (e) {
        return (e as Error).message;
      }
      return 'ok';
    };
    const map = { op: 'map', domain: 'd', iova: '0x1000', paddr: '0', size: '4K' };
    expect(err({ ...map, paddr: 'nope' })).toBe('paddr: "nope" is not a number (expected 0x hex or decimal)');
    expect(err({ ...map, size: '4Q' })).toBe('size: unknown size suffix "Q"');
    expect(err({ ...map, prot: 'rz' })).toBe('prot: prot "rz": unknown letter "z" (use r, w, c, n, m, p)');
    expect(err({ ...map, extra: 1 })).toBe('unknown field(s) "extra"');
    expect(err({ ...map, domain: 'a b' })).toBe('domain: a domain name has no spaces');
    expect(err({ op: 'map', domain: 'd', paddr: '0', size: '4K' })).toBe('iova: Invalid input');
    expect(err({ op: 'unmap', domain: 'd', iova: '-1', size: '4K' })).toBe('iova: "-1" is negative; addresses and sizes are unsigned');
    expect(err({ op: 'unmap', domain: 'd', iova: '0x1000', size: '4K', pid: -1 })).toBe('pid: Too small: expected number to be >=0');
    expect(err({ op: 'unmap', domain: 'd', iova: '0x1000', size: '4K', id: '@x' })).toBe("id: an id cannot start with '@' (kept for ids the ledger derives)");
    expect(err({ op: 'fault', domain: 'd', iova: '0x10000000000000000' })).toBe('iova: "0x10000000000000000" does not fit in 64 bits (max 0xffffffffffffffff)');
    expect(err({ op: 'fault', domain: 'd', iova: 1.5 })).toBe('iova: 1.5 is not an exact integer (numbers above 2^53 lose precision: pass a "0x..." string)');
    expect(err({ op: 'nope', domain: 'd' })).toBe('op: op must be one of domain, map, unmap, fault, attach, detach, destroy');
  });
});

/** Tables and entries per level recounted from the live runs (a table of level L per distinct span holding a leaf at level >= L). */
function recount(d: Domain): { tables: number[]; entries: number[] } {
  const lv = d.profile.format.levels;
  const spans = lv.map(() => new Set<bigint>());
  const entriesOf = lv.map(() => 0);
  for (const r of d.runs()) {
    entriesOf[r.level]! += Number(r.count) * r.repeat;
    const end = r.iova + r.pageSize * r.count;
    for (let l = 1; l <= r.level; l++) {
      const sh = BigInt(lv[l - 1]!.shift);
      for (let s = r.iova >> sh; s <= (end - 1n) >> sh; s++) spans[l]!.add(s);
    }
  }
  return { tables: spans.map((s, l) => (l === 0 ? 1 : s.size)), entries: entriesOf };
}

describe('table accounting on numbers and on bigints', () => {
  const profile = customProfile({ name: 'wide', pgsizes: ['4K', '64K', '2M'], iovaBits: 64, semantics: 'legacy' });
  // The largest span of a table (the root's entry size): moving every address by a multiple of
  // it changes no table, so both domains must count and report the same.
  const topSpan = 1n << BigInt(profile.format.levels[0]!.shift);
  // The root's entry spans 2^57 bytes here, so every base but 0 is above 2^53: 0 is the one that
  // takes the number paths (tree keys, the accounting on numbers).
  const zero = 0n;
  const low = 3n * topSpan;
  const high = ((1n << 53n) / topSpan + 5n) * topSpan; // above 2^53: bigint keys and accounting
  const top = (1n << 64n) - 4n * topSpan; // near 2^64
  const op = fc.record({
    unmap: fc.boolean(),
    sem: fc.constantFrom('legacy', 'split', 'strict') as fc.Arbitrary<'legacy' | 'split' | 'strict'>,
    at: fc.integer({ min: 0, max: 1200 }),
    pages: fc.integer({ min: 1, max: 600 }),
    far: fc.integer({ min: 0, max: 3 }),
  });
  const norm = (base: bigint, hw: HwDelta) => ({ ...hw, invalidations: hw.invalidations.map((r) => [r.start - base, r.end - base]) });
  const shape = (base: bigint, runs: Iterable<Run>) => [...runs].map((r) => [r.iova - base, r.pageSize, r.count, r.level]);

  it('gives the same deltas and counts below and above 2^53, and counts what a recount finds', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40, size: 'max' }), (ops) => {
        const bases = [zero, low, high, top];
        const ds = bases.map(() => new Domain(profile));
        ops.forEach((o, i) => {
          const off = BigInt(o.at) * 4n * K + BigInt(o.far) * 512n * M;
          const size = BigInt(o.pages) * 4n * K;
          const out = ds.map((d, j) => {
            const base = bases[j]!;
            if (!o.unmap) {
              const r = d.map({ iova: base + off, paddr: off, size, ref: i });
              return r.ok ? { ok: true, hw: norm(base, r.hw), runs: shape(base, r.changes.after) } : { ok: false };
            }
            const r = d.unmap({ iova: base + off, size }, o.sem);
            return { ok: r.ok, hw: norm(base, r.hw), removed: shape(base, r.removed), left: r.leftMapped.map((x) => [x.start - base, x.end - base]) };
          });
          for (let j = 1; j < bases.length; j++) expect(out[j]).toEqual(out[0]);
        });
        const stats = ds.map((d) => d.stats());
        for (let j = 1; j < bases.length; j++) expect(stats[j]).toEqual(stats[0]);
        for (const d of ds) {
          const rc = recount(d);
          expect(d.stats().levels.map((l) => l.tables)).toEqual(rc.tables);
          expect(d.stats().levels.map((l) => l.entries)).toEqual(rc.entries);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('orders runs and intervals across 2^53 (number keys below, bigint keys above)', () => {
    const d = new Domain(profile);
    const set = new IntervalSet();
    const at = [(1n << 53n) - 8n * K, (1n << 53n) - 4n * K, 1n << 53n, (1n << 53n) + 4n * K, (1n << 64n) - 4n * K, 0n, 4n * K];
    at.forEach((a, i) => {
      expect(d.map({ iova: a, paddr: 0n, size: 4n * K, ref: i }).ok).toBe(true);
      set.add(a, a + 4n * K, i);
    });
    const sorted = [...at].sort((a, b) => (a < b ? -1 : 1));
    expect([...d.runs()].map((r) => r.iova)).toEqual(sorted);
    expect([...set].map((iv) => iv.start)).toEqual(sorted);
    expect(d.mappedIn({ start: (1n << 53n) - 8n * K, end: (1n << 53n) + 8n * K })).toEqual([{ start: (1n << 53n) - 8n * K, end: (1n << 53n) + 8n * K }]);
    expect(set.overlapping((1n << 53n) - 1n, (1n << 53n) + 1n).map((iv) => iv.value)).toEqual([1, 2]);
    expect(d.find((1n << 53n) + 1n)?.origin.ref).toBe(2);
    const u = d.unmap({ iova: (1n << 53n) - 4n * K, size: 8n * K });
    expect(u.removed.map((r) => r.iova)).toEqual([(1n << 53n) - 4n * K, 1n << 53n]);
    expect(set.subtract((1n << 53n) - 2n * K, (1n << 53n) + 2n * K).removed.map((iv) => iv.value)).toEqual([1, 2]);
    expect([...set].map((iv) => [iv.start, iv.value])).toEqual([
      [0n, 5],
      [4n * K, 6],
      [(1n << 53n) - 8n * K, 0],
      [(1n << 53n) - 4n * K, 1],
      [(1n << 53n) + 2n * K, 2],
      [(1n << 53n) + 4n * K, 3],
      [(1n << 64n) - 4n * K, 4],
    ]);
  });
});

describe('splitRegion size tables', () => {
  it('give the kernel’s page loop for bitmaps anywhere in 64 bits', () => {
    const bitmap = fc
      .uniqueArray(fc.integer({ min: 0, max: 63 }), { minLength: 1, maxLength: 5 })
      .map((bits) => bits.reduce((a, b) => a | (1n << BigInt(b)), 0n));
    fc.assert(
      fc.property(
        bitmap,
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.integer({ min: 1, max: 40 }),
        (bm, va, pa, n) => {
          const min = bm & -bm;
          const iova = va - (va % min);
          const paddr = pa - (pa % min);
          const size = min * BigInt(n);
          const pages = splitRegionPagewise(iova, paddr, size, bm);
          const runs = splitRegion(iova, paddr, size, bm);
          const flat = runs.flatMap((r) =>
            Array.from({ length: Number(r.count) }, (_, i) => [r.iova + BigInt(i) * r.pageSize, r.paddr + BigInt(i) * r.pageSize, r.pageSize]),
          );
          expect(flat).toEqual(pages);
        },
      ),
      { numRuns: 3000 },
    );
    // A whole 64-bit space in one page, and a size past 2^64 (the general path).
    expect(splitRegion(0n, 0n, 1n << 64n, 1n << 63n)).toEqual([{ iova: 0n, paddr: 0n, pageSize: 1n << 63n, count: 2n }]);
    expect(splitRegion(0n, 0n, 1n << 65n, 1n << 64n)).toEqual([{ iova: 0n, paddr: 0n, pageSize: 1n << 64n, count: 2n }]);
  });
});
