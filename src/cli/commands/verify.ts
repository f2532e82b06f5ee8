/** `verify`: walk the hash chain (and every page of the file); `--checkpoint` proves the ledger extends earlier heads. */
import type { Command } from 'commander';
import { Findings, type Context } from '../context.js';
import { InputError } from '../errors.js';
import { walkChain } from '../chain.js';
import { json } from '../render/format.js';
import { verifyText } from '../render/integrity.js';

export function register(program: Command, { g, out, ledgerLib }: Context): void {
  program
    .command('verify')
    .description('walk the hash chain: report the first event that was changed, removed or reordered')
    .option('--checkpoint <file...>', 'also prove that the ledger still extends these checkpoints (files, or folders of them)')
    .option('--pubkey <pem>', 'the checkpoints must be signed by this Ed25519 public key')
    .action(async (o: { checkpoint?: string[]; pubkey?: string }) => {
      const { Ledger } = await ledgerLib();
      const cp = o.checkpoint || o.pubkey !== undefined ? await import('../checkpoint.js') : undefined;
      if (o.pubkey !== undefined && !o.checkpoint) throw new InputError('--pubkey checks the signatures of checkpoints: give --checkpoint FILE too');
      // Bad checkpoint files and keys fail (exit 2) before the chain is walked.
      const loaded = cp && o.checkpoint ? cp.loadCheckpoints(o.checkpoint, o.pubkey) : undefined;
      const ledger = new Ledger(g().db, { mustExist: true });
      try {
        const r = await walkChain(ledger);
        // Every page of the file too: damage outside the events (a projection's page) fails
        // here, and the damage report follows (exit 1; events/damage.ts).
        (await import('../../events/damage.js')).assertFileIntact(ledger.store);
        const checks = cp && loaded ? cp.checkCheckpoints(ledger.store, loaded, r) : undefined;
        if (g().json) out(json(checks ? { ...r, checkpoints: checks } : r));
        else out(verifyText(r, checks));
        const failed = (checks ?? []).filter((c) => !c.ok);
        const more = failed.length > 1 ? ` (${failed.length} of ${checks!.length} checkpoints fail)` : '';
        if (!r.ok) throw new Findings(`the hash chain is broken${failed.length ? `; ${failed.length} checkpoint(s) not confirmed` : ''}`);
        if (failed.length) throw new Findings(`${failed[0]!.message}${more}`);
      } finally {
        ledger.close();
      }
    });
}
