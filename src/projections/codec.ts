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
