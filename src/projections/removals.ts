/**
 * The runs of one domain ended since the projections last wrote their rows (`Ledger`): until the
 * runs table says so, the ledger asks here which event last removed a page (why an unmap missed,
 * why a fault happened). A few thousand ends gather between writes; a look-up reads only the ends
 * that start within the longest one's span below the page, in a B+ tree keyed by start, instead
 * of scanning them all. The tree is filled when a look-up comes, not at each end: most batches
 * end thousands of runs and ask about none.
 */
import { cmpKey, keyOf, type TreeKey } from '../core/treekey.js';
import { BTree } from '../core/btree.js';

/** Ends of runs that started at one IOVA: the byte after each run (a tree key) and the event that ended it. */
interface Ends {
  end: TreeKey[];
  to: number[];
}

export class RecentRemovals {
  private tree: BTree<TreeKey, Ends> = new BTree<TreeKey, Ends>(undefined, cmpKey);
  /** The longest run held (bytes). */
  private span = 0n;
  /** Ends in the tree. */
  private count = 0;
  /** Every end held, in the order added; those from `indexed` on are not in the tree yet. */
  private starts: bigint[] = [];
  private ends: bigint[] = [];
  private tos: number[] = [];
  private indexed = 0;

  get size(): number {
    return this.starts.length;
  }

  /** The run [start, end) was ended by the event at `to` (calls come in position order). */
  add(start: bigint, end: bigint, to: number): void {
    // Kept in order first: the tree is filled only when asked (most appends never ask).
    this.starts.push(start);
    this.ends.push(end);
    this.tos.push(to);
  }

  /** The position of the latest event held that removed the byte at iova, if one did. */
  lastRemovalOf(iova: bigint): number | undefined {
    this.index();
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
    this.starts = [];
    this.ends = [];
    this.tos = [];
    this.indexed = 0;
    if (this.count === 0) return;
    this.tree = new BTree<TreeKey, Ends>(undefined, cmpKey);
    this.span = 0n;
    this.count = 0;
  }

  /** Enters the ends added since the last look-up into the tree, in order. */
  private index(): void {
    for (let i = this.indexed; i < this.starts.length; i++) {
      const start = this.starts[i]!;
      const end = this.ends[i]!;
      const k = keyOf(start);
      let e = this.tree.get(k);
      if (e === undefined) this.tree.set(k, (e = { end: [], to: [] }));
      e.end.push(keyOf(end));
      e.to.push(this.tos[i]!);
      if (end - start > this.span) this.span = end - start;
      this.count++;
    }
    this.indexed = this.starts.length;
  }
}
