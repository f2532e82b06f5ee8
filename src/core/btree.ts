/**
 * The B+ tree of `sorted-btree`, imported once for every module that keys by IOVA (runs, intervals,
 * recent removals). The package is CommonJS with its class as `exports.default`: Node's ESM loader
 * hands us module.exports as the default import, bundlers (vitest, esbuild) the class itself.
 * Take either.
 */
import * as btree from 'sorted-btree';

type BTreeCtor = typeof btree.default.default;
const cjs = (btree as unknown as { default: BTreeCtor | { default: BTreeCtor } }).default;

export const BTree: BTreeCtor = typeof cjs === 'function' ? cjs : cjs.default;
export type BTree<K, V> = InstanceType<typeof btree.default.default<K, V>>;
