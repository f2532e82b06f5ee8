/**
 * The runs of one domain ended since the projections last wrote their rows (`Ledger`): until the
 * runs table says so, the ledger asks here which event last removed a page (why an unmap missed,
 * why a fault happened). A few thousand ends gather between writes; a look-up reads only the ends
 * that start within the longest one's span below the page, in a B+ tree keyed by start, instead
 * of scanning them all.
 */
import * as btree from 'sorted-btree';
import { cmpKey, keyOf, type TreeKey } from '../core/treekey.js';

type BTreeCtor = typeof btree.default.default;
const cjs = (btree as unknown as { default: BTreeCtor | { default: BTreeCtor } }).default;
const BTree: BTreeCtor = typeof cjs === 'function' ? cjs : cjs.default;
type Tree<K, V> = InstanceType<typeof btree.default.default<K, V>>;

/** Ends of runs that started at one IOVA: the byte after each run (a tree key) and the event that ended it. */
interface Ends {
  end: TreeKey[];
  to: number[];
}

export class RecentRemovals {
  private tree: Tree<TreeKey, Ends> = new BTree<TreeKey, Ends>(undefined, cmpKey);
  /** The longest run held (bytes). */
  private span = 0n;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The run [start, end) was ended by the event at `to` (calls come in position order). */
  add(start: bigint, end: bigint, to: number): void {
    const k = keyOf(start);
    let e = this.tree.get(k);
    if (e === undefined) this.tree.set(k, (e = { end: [], to: [] }));
    e.end.push(keyOf(end));
    e.to.push(to);
    if (end - start > this.span) this.span = end - start;
    this.count++;
  }

  /** The position of the latest event held that removed the byte at iova, if one did. */
  lastRemovalOf(iova: bigint): number | undefined {
    if (this.count === 0) return undefined;
    const x = keyOf(iova);
    let at: number | undefined;
    // A run holding iova starts at most its length below it.
    const low = keyOf(iova >= this.span ? iova - this.span + 1n : 0n);
    this.tree.forRange(low, x, true, (_k: TreeKey, e: Ends) => {
      for (let i = e.end.length - 1; i >= 0; i--) {
        if (e.end[i]! > x) {
          if (at === undefined || e.to[i]! > at) at = e.to[i]!;
          break;
        }
      }
    });
    return at;
  }

  /** Forgets every end (the runs table now holds them). */
  clear(): void {
    if (this.count === 0) return;
    this.tree = new BTree<TreeKey, Ends>(undefined, cmpKey);
    this.span = 0n;
    this.count = 0;
  }
}
