/**
 * Keys of the B+ trees that hold runs and intervals by IOVA. Comparing bigints costs far more
 * than comparing numbers, and a tree lookup compares a key some 15-20 times, so an IOVA below
 * 2^53 in magnitude (exact as a number, nearly every one in practice) is kept as a number and
 * only larger ones as bigints. JavaScript compares a number with a bigint exactly, so the order
 * of the keys is that of the IOVAs whatever their kinds, and a value has one kind of key.
 */
export type TreeKey = number | bigint;

const EXACT = 9007199254740992; // 2^53

/** The key of an IOVA. */
export function keyOf(v: bigint): TreeKey {
  const n = Number(v);
  return n < EXACT && n > -EXACT ? n : v;
}

export const cmpKey = (a: TreeKey, b: TreeKey): number => (a < b ? -1 : a > b ? 1 : 0);
