/** `rebuild`: recompute every projection from the events alone. */
import type { Command } from 'commander';
import type { Context } from '../context.js';
import { collectGarbage } from '../gc.js';
import { withProgress } from '../progress.js';
import { json } from '../render/format.js';
import { brokenChainWarning, rebuildJson, rebuildText } from '../render/integrity.js';

export function register(program: Command, { io, g, out, ledgerLib }: Context): void {
  program
    .command('rebuild')
    .description('recompute every projection from the events alone (checking the hash chain as it reads them)')
    .option('--accept-broken-chain', 'rebuild even when the hash chain is broken: the projections then follow the events as they are now')
    .action(async (o: { acceptBrokenChain?: boolean }) => {
      const { Ledger } = await ledgerLib();
      const ledger = new Ledger(g().db, { mustExist: true, collectGarbage });
      try {
        const r = await withProgress('rebuild', async (tick) =>
          ledger.rebuild((n, total) => tick(n, total), { acceptBrokenChain: o.acceptBrokenChain ?? false }),
        );
        if (g().json) return out(json(rebuildJson(r)));
        if (!r.chain.ok) io.err(brokenChainWarning(r));
        out(rebuildText(r));
      } finally {
        ledger.close();
      }
    });
}
