/** `replay`: what if: the ledger's commands under another profile, unmap behaviour or kernel release (src/cli/replay.ts). */
import { Option, type Command } from 'commander';
import { SEMANTICS, type Semantics } from '../../core/profile.js';
import type { Context } from '../context.js';
import { InputError } from '../errors.js';
import { json } from '../render/format.js';

export function register(program: Command, { g, out }: Context): void {
  program
    .command('replay')
    .description("what if: re-run the ledger's commands under another profile, unmap behaviour or kernel release into a new ledger, and compare")
    .addOption(new Option('--semantics <s>', 'unmap behaviour to use').choices([...SEMANTICS]))
    .option('--profile <name>', 'hardware profile to use')
    .requiredOption('--out <path>', 'the new ledger file (the original is never changed)')
    .option(
      '--kernel <release>',
      "each domain's profile as that kernel release behaves (e.g. 6.13: arm-lpae-4k becomes arm-lpae-4k@6.13); lists the call sites that change",
    )
    .addOption(new Option('--domain <name>', 'change the profile or behaviour of this domain only (every domain is replayed)'))
    .action(async (o: { semantics?: Semantics; profile?: string; out: string; domain?: string; kernel?: string }) => {
      if (!o.semantics && !o.profile && o.kernel === undefined) throw new InputError('replay: give --kernel, or --semantics and/or --profile');
      const { replayLedger } = await import('../replay.js');
      const r = await replayLedger(g().db, o.out, o);
      if (g().json) return out(json(r));
      out(r.report.join('\n'));
    });
}
