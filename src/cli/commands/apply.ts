/** `apply`: store hand-written commands (JSON Lines); src/cli/apply.ts reads and stores them. */
import type { Command } from 'commander';
import type { CheckpointToOptions } from '../checkpoint.js';
import { newLedgerGuard, type Context } from '../context.js';
import { collectGarbage } from '../gc.js';
import { applyText } from '../render/apply.js';
import { json } from '../render/format.js';

export function register(program: Command, { g, out, ledgerLib }: Context): void {
  program
    .command('apply')
    .description('store hand-written commands (JSON Lines, one command a line; see docs/commands.md)')
    .argument('<file>', 'a .jsonl file, or - for standard input')
    .option('--checkpoint-to <dir>', "after the run, write a checkpoint of the ledger's head into this folder (see `checkpoint`)")
    .option('--checkpoint-key <pem>', 'sign those checkpoints with this Ed25519 private key')
    .action(async (file: string, o: CheckpointToOptions) => {
      const { Ledger } = await ledgerLib();
      const { applyFile } = await import('../apply.js');
      const cp = await import('../checkpoint.js');
      const plan = cp.planRunCheckpoint(o);
      const ledger = newLedgerGuard(g().db, () => new Ledger(g().db, { durable: true, collectGarbage }));
      try {
        const s = await applyFile(ledger, file);
        const written = plan && cp.writeRunCheckpoint(ledger.store, plan);
        if (g().json) return out(json(plan ? { ...s, checkpoint: written ?? null } : s));
        out(applyText(s, g().db));
        if (plan) out(cp.runCheckpointLine(written));
      } finally {
        ledger.close();
      }
    });
}
