/** `rebuild`: recompute every projection, or some (`--projection`), from the events alone. */
import type { Command } from 'commander';
import type { Context } from '../context.js';
import { collectGarbage } from '../gc.js';
import { withProgress } from '../progress.js';
import { InputError } from '../errors.js';
import { json } from '../render/format.js';
import { brokenChainWarning, rebuildJson, rebuildText } from '../render/integrity.js';

export function register(program: Command, { io, g, out, ledgerLib }: Context): void {
  program
    .command('rebuild')
    .description('recompute the projections (all, or those --projection names) from the events alone (checking the hash chain as it reads them)')
    .option('--accept-broken-chain', 'rebuild even when the hash chain is broken: the projections then follow the events as they are now')
    .option(
      '--projection <name...>',
      // The names are the registry's (src/projections/registry.ts; a test holds this list to it): not imported, to keep start-up light.
      'rebuild only these projections (runs, intent, caller-symmetry, findings, faults, hardware), with any that shares a table with one of them (findings and faults go together); the others keep their rows',
    )
    .action(async (o: { acceptBrokenChain?: boolean; projection?: string[] }) => {
      const { Ledger, PROJECTION_NAMES } = await ledgerLib();
      const unknown = (o.projection ?? []).filter((n) => !PROJECTION_NAMES.includes(n));
      if (unknown.length) throw new InputError(`--projection ${unknown.join(' ')}: no such projection (the projections are ${PROJECTION_NAMES.join(', ')})`);
      const ledger = new Ledger(g().db, { mustExist: true, collectGarbage });
      try {
        const r = await withProgress('rebuild', async (tick) =>
          ledger.rebuild((n, total) => tick(n, total), {
            acceptBrokenChain: o.acceptBrokenChain ?? false,
            ...(o.projection ? { projections: o.projection } : {}),
          }),
        );
        const only = o.projection !== undefined;
        if (g().json) return out(json(rebuildJson(r, only)));
        if (!r.chain.ok) io.err(brokenChainWarning(r));
        out(rebuildText(r, only));
      } finally {
        ledger.close();
      }
    });
}
