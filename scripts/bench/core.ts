/**
 * Core benchmark (issue 2): map/unmap throughput of src/core/domain.ts with 10^6 live runs, how it
 * scales with the number of runs (it should follow log(runs), not pages), and the cost of a 1 GiB
 * map on a 4K-only profile (one run, not 262,144 objects).
 *
 *   npm run build && npm run bench:core -- [runs=1000000] [opsPerMix=200000]
 *
 * Each "op" is one Domain.map or Domain.unmap call. Every mix leaves the domain as it found it,
 * so the number of live runs stays fixed while it is measured.
 */
import { Domain } from '../../src/core/domain.js';
import { resolveProfile, type Semantics } from '../../src/core/profile.js';
import { customProfile } from '../../src/core/profile-spec.js';

const RUNS = Number(process.argv[2] ?? 1_000_000);
const OPS = Number(process.argv[3] ?? 200_000);

const K = 1n << 10n;
const M = 1n << 20n;
const G = 1n << 30n;
/** One live map per 8M slot; the second half of every slot stays free for the mixes. */
const SLOT = 8n * M;

const fmt = (v: number) => Math.round(v).toLocaleString('en-US');
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** A small deterministic PRNG (mulberry32), so every run measures the same layout. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Slot {
  iova: bigint;
  size: bigint;
  /** Whether the map is one 2M page (the partial-unmap mixes cut those). */
  large: boolean;
}

/**
 * `n` non-overlapping maps of 4K..2M on intel-vtd (4K|2M|1G), each exactly one run: k x 4K pages
 * (k < 512) or one 2M page, at pseudo-random slots spread over the 48-bit space.
 */
function build(n: number): { d: Domain; slots: Slot[]; buildMs: number } {
  const d = new Domain(resolveProfile('intel-vtd'));
  const rnd = prng(n);
  const slots: Slot[] = [];
  // Slots at pseudo-random positions in the lower half of the space (2^47 / 8M = 2^24 of them),
  // one in each block of 2^24 / n, mapped in IOVA order (as an importer replaying a trace sees
  // them); the upper half stays free for the 1 GiB figures.
  const block = Math.floor(2 ** 24 / n);
  if (block < 1) throw new Error(`at most ${2 ** 24} runs`);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const iova = BigInt(i * block + Math.floor(rnd() * block)) * SLOT;
    const large = rnd() < 0.3;
    const size = large ? 2n * M : BigInt(1 + Math.floor(rnd() * 511)) * 4n * K;
    const r = d.map({ iova, paddr: iova + G, size, ref: i });
    if (!r.ok) throw new Error(`build: ${r.reason}`);
    slots.push({ iova, size, large });
  }
  const buildMs = ms(t0);
  if (d.runCount !== n) throw new Error(`expected ${n} runs, have ${d.runCount}`);
  return { d, slots, buildMs };
}

interface Mix {
  name: string;
  /** Runs one round of the mix on slot `s`; returns the number of map/unmap calls it made. */
  round: (d: Domain, s: Slot, rnd: () => number) => number;
}

function mustOk(ok: boolean, what: string): void {
  if (!ok) throw new Error(`${what} failed`);
}

/** Map a fresh 4K..2M region in the free half of a slot, then unmap it symmetrically. */
function symmetric(sem: Semantics): Mix {
  return {
    name: `map + symmetric unmap (${sem})`,
    round: (d, s, rnd) => {
      const iova = s.iova + SLOT / 2n;
      const size = rnd() < 0.3 ? 2n * M : BigInt(1 + Math.floor(rnd() * 511)) * 4n * K;
      mustOk(d.map({ iova, paddr: iova, size, ref: -1 }).ok, 'map');
      const u = d.unmap({ iova, size }, sem);
      mustOk(u.ok && u.unmappedSize === size, 'symmetric unmap');
      return 2;
    },
  };
}

/**
 * Unmap 4K inside a live map (a 2M page or a run of 4K pages), then put the slot back as it was.
 * legacy: the whole page goes (a 2M page: collateral) -> unmap what is left, map again.
 * split: only the 4K goes (a 2M page is rewritten as 511 4K pages) -> unmap the rest, map again.
 * strict (VFIO v2): the cut is refused with EINVAL -> nothing to restore.
 */
function partial(sem: Semantics): Mix {
  return {
    name: `partial unmap of 4K + restore (${sem})`,
    round: (d, s, rnd) => {
      const pages = s.size / (4n * K);
      const at = s.iova + BigInt(Math.floor(rnd() * Number(pages))) * 4n * K;
      const u = d.unmap({ iova: at, size: 4n * K }, sem);
      if (sem === 'strict') {
        // A one-page map unmapped whole is not a cut: put it back.
        if (u.ok && u.unmappedSize > 0n) {
          mustOk(d.map({ iova: s.iova, paddr: s.iova + G, size: s.size, ref: 0 }).ok, 'remap');
          return 2;
        }
        mustOk(u.errno === 'EINVAL', 'strict cut refused');
        return 1;
      }
      // Whatever of the slot's map is still live goes too (legacy on a 2M page: nothing). Legacy
      // and split would stop at the new hole; the whole-mapping unmap of VFIO takes every piece.
      let calls = 1;
      if (d.runs(s.iova, s.iova + s.size).next().done !== true) {
        mustOk(d.unmap({ iova: s.iova, size: s.size }, 'strict').ok, 'unmap rest');
        calls++;
      }
      mustOk(d.map({ iova: s.iova, paddr: s.iova + G, size: s.size, ref: 0 }).ok, 'remap');
      return calls + 1;
    },
  };
}

const MIXES: Mix[] = [symmetric('legacy'), symmetric('split'), symmetric('strict'), partial('legacy'), partial('split'), partial('strict')];

/** All mixes interleaved: what the scaling check measures. */
const ALL: Mix = {
  name: 'all six mixes interleaved',
  round: (d, s, rnd) => MIXES[Math.floor(rnd() * MIXES.length)]!.round(d, s, rnd),
};

function measure(d: Domain, slots: Slot[], mix: Mix, ops: number, seed: number): number {
  const rnd = prng(seed);
  const pick = () => slots[Math.floor(rnd() * slots.length)]!;
  // Warm-up, then the timed part.
  for (let n = 0; n < Math.min(ops / 10, 20_000);) n += mix.round(d, pick(), rnd);
  const t0 = process.hrtime.bigint();
  let n = 0;
  while (n < ops) n += mix.round(d, pick(), rnd);
  const t = ms(t0);
  if (d.runCount !== slots.length) throw new Error(`${mix.name} left ${d.runCount} runs, expected ${slots.length}`);
  return (n / t) * 1000;
}

function main(): void {
  console.log(`core bench: intel-vtd (4K|2M|1G, 48-bit, 4-level tables), ${fmt(OPS)} ops per figure`);

  const big = build(RUNS);
  const st = big.d.stats();
  console.log(
    `build: ${fmt(RUNS)} maps of 4K..2M -> ${fmt(big.d.runCount)} live runs in ${(big.buildMs / 1000).toFixed(2)} s ` +
      `(${fmt((RUNS / big.buildMs) * 1000)} maps/s); tables per level ${st.levels.map((l) => fmt(l.tables)).join(' / ')}, ` +
      `heap ${fmt(process.memoryUsage().heapUsed / 2 ** 20)} MiB`,
  );
  console.log(`\nmixes at ${fmt(RUNS)} live runs (one op = one map or unmap call):`);
  for (const [i, mix] of MIXES.entries()) {
    console.log(`  ${mix.name.padEnd(40)} ${fmt(measure(big.d, big.slots, mix, OPS, 100 + i)).padStart(10)} ops/s`);
  }
  const bigRate = measure(big.d, big.slots, ALL, OPS, 7);
  console.log(`  ${ALL.name.padEnd(40)} ${fmt(bigRate).padStart(10)} ops/s`);

  // Best of three per size: other processes on the machine only ever slow a round down.
  console.log('\nscaling (all mixes interleaved, best of 3 rounds; log2(runs) in brackets):');
  const best = (d: Domain, slots: Slot[]) => Math.max(...[1, 2, 3].map((k) => measure(d, slots, ALL, OPS / 2, 10 + k)));
  const rates: Array<[number, number]> = [];
  for (const n of [10_000, 100_000].filter((x) => x < RUNS)) {
    const small = build(n);
    rates.push([n, best(small.d, small.slots)]);
  }
  rates.push([RUNS, best(big.d, big.slots)]);
  const [n0, r0] = rates[0]!;
  for (const [n, r] of rates) {
    console.log(
      `  ${fmt(n).padStart(10)} runs [${Math.log2(n).toFixed(1)}]: ${fmt(r).padStart(10)} ops/s  ` +
        `(x${(r0 / r).toFixed(2)} time per op vs ${fmt(n0)}; runs x${fmt(n / n0)})`,
    );
  }

  console.log('\n1 GiB map on a 4K-only profile (48-bit, 4-level generic tables):');
  const d4k = new Domain(customProfile({ name: '4k-only', pgsizes: ['4K'], iovaBits: 48 }));
  const first = d4k.map({ iova: G, paddr: 0x8_0000_0000n, size: G, ref: 1 });
  if (!first.ok) throw new Error(first.reason);
  const s4 = d4k.stats();
  console.log(
    `  ${first.runs.length} run of ${fmt(Number(first.runs[0]!.count))} pages; ${fmt(s4.levels[3]!.entries)} leaf entries in ` +
      `${fmt(s4.levels[3]!.tables)} tables; runs in the domain: ${d4k.runCount}`,
  );
  mustOk(d4k.unmap({ iova: G, size: G }).ok, 'unmap 1G');
  const reps = 20_000;
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) {
    d4k.map({ iova: G, paddr: 0x8_0000_0000n, size: G, ref: i });
    d4k.unmap({ iova: G, size: G });
  }
  const pair = ms(t0) / reps;
  console.log(`  map 1 GiB + unmap 1 GiB: ${(pair * 1000).toFixed(1)} us per pair (${fmt(2000 / pair)} ops/s)`);
  // The same pair next to 10^6 other runs: cost depends on the tree, not on the 262,144 pages.
  const big4k = big.d.clone();
  t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) {
    mustOk(big4k.map({ iova: 1n << 47n, paddr: 0n, size: G, ref: i }).ok, 'map 1G');
    big4k.unmap({ iova: 1n << 47n, size: G });
  }
  console.log(`  map 1 GiB + unmap 1 GiB beside ${fmt(RUNS)} runs (intel-vtd, one 1G page): ${((ms(t0) / reps) * 1000).toFixed(1)} us per pair`);
  t0 = process.hrtime.bigint();
  const huge = d4k.map({ iova: 0n, paddr: 0n, size: 1n << 47n, ref: 2 });
  const hugeMs = ms(t0);
  if (!huge.ok) throw new Error(huge.reason);
  console.log(`  map 128 TiB (2^35 4K pages): ${huge.runs.length} run, ${hugeMs.toFixed(2)} ms`);
}

main();
