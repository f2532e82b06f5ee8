/**
 * SQLite stores signed 64-bit integers; addresses are unsigned. Stored values are shifted by
 * -2^63, which keeps their order, so range queries work on the stored form.
 */
const BIAS = 1n << 63n;

export function toDb(v: bigint): bigint {
  return v - BIAS;
}

export function fromDb(v: bigint | number): bigint {
  return BigInt(v) + BIAS;
}

/** Bit length of a lifetime in events: the class a closed temporal row is filed under. */
export function lifetimeClass(from: number, to: number): number {
  const d = to - from;
  return d <= 0 ? 0 : Math.floor(Math.log2(d)) + 1;
}

/** The class of rows that are still live. */
export const LIVE_CLASS = 63;
