/** `blame`: which event made the page at an IOVA what it is, and the chain before it. */
import type { Command } from 'commander';
import { addressArg, atOption, domainOption, type Context } from '../context.js';
import { blameText } from '../render/blame.js';
import { json } from '../render/format.js';

export function register(program: Command, { g, out, queries }: Context): void {
  program
    .command('blame')
    .description('which event made the page at an IOVA what it is, and the chain before it')
    .argument('<iova>')
    .addOption(domainOption())
    .addOption(atOption())
    .action(async (iovaText: string, o: { domain?: string; at?: string }) => {
      const b = (await queries()).blame(o.domain, addressArg(iovaText), o.at);
      if (g().json) return out(json(b));
      for (const block of blameText(b)) out(block);
    });
}
