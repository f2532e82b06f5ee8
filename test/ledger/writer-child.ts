/**
 * A separate writer process for the crash and concurrency tests:
 *   vite-node writer-child.ts DB batches N SIZE TAG   - N transactions of SIZE maps+unmaps each
 *   vite-node writer-child.ts DB single N TAG         - N one-command transactions
 *   vite-node writer-child.ts DB deferred N TAG       - the same, projections deferred (up to 10^6
 *                                                       events), "committed K" after each
 * Prints "committed K" after each commit.
 */
import { Ledger } from '../../src/projections/ledger.js';

const [db, mode, nText, a, b] = process.argv.slice(2);
const ledger = new Ledger(db!, mode === 'deferred' ? { deferProjections: 1_000_000 } : {});
const n = Number(nText);
if (mode === 'batches') {
  const size = Number(a);
  const tag = b!;
  for (let i = 0; i < n; i++) {
    const cmds: unknown[] = [];
    for (let j = 0; j < size; j++) {
      const k = i * size + j;
      const iova = `0x${(0x1000_0000 + (k % 4096) * 0x2000).toString(16)}`;
      cmds.push(
        k % 2 === 0
          ? { op: 'map', domain: 'd0', iova, paddr: '0x40000000', size: '8K', caller: tag }
          : { op: 'unmap', domain: 'd0', iova: `0x${(0x1000_0000 + ((k - 1) % 4096) * 0x2000).toString(16)}`, size: '8K', caller: tag },
      );
    }
    ledger.appendRaw(cmds);
    process.stdout.write(`committed ${i + 1}\n`);
  }
} else {
  const tag = a!;
  const base = tag === 'A' ? 0x1000_0000 : 0x2000_0000;
  for (let i = 0; i < n; i++) {
    ledger.appendRaw([
      { op: 'map', domain: 'd0', iova: `0x${(base + i * 0x1000).toString(16)}`, paddr: '0x40000000', size: '4K', caller: tag, id: `${tag}-${i}` },
    ]);
    if (mode === 'deferred') process.stdout.write(`committed ${i + 1}\n`);
  }
  process.stdout.write(`committed ${n}\n`);
}
ledger.close();
