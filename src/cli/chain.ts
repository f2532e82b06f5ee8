/**
 * The hash chain walked for `verify` and `checkpoint`: with a progress bar on a terminal, and a
 * full garbage collection as it goes (a million events would otherwise pile up garbage).
 */
import type { VerifyResult } from '../events/chain.js';
import type { EventStore } from '../events/store.js';
import { collectGarbage } from './gc.js';
import { withProgress } from './progress.js';

export function walkChain(ledger: { store: EventStore; lastPosition: number }): Promise<VerifyResult> {
  return withProgress('verify', async (tick) =>
    ledger.store.verify((n) => {
      tick(n, ledger.lastPosition);
      collectGarbage();
    }),
  );
}
