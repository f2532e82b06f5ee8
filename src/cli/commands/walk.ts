/** `walk`: the page-table walk the hardware does for an IOVA. */
import type { Command } from 'commander';
import { addressArg, atOption, domainOption, type Context } from '../context.js';
import { json } from '../render/format.js';
import { walkJson, walkText } from '../render/walk.js';

export function register(program: Command, { g, out, queries }: Context): void {
  program
    .command('walk')
    .description('the page-table walk the hardware does for an IOVA')
    .argument('<iova>')
    .addOption(domainOption())
    .addOption(atOption())
    .action(async (iovaText: string, o: { domain?: string; at?: string }) => {
      const iova = addressArg(iovaText);
      const w = (await queries()).walk(o.domain, iova, o.at);
      if (g().json) return out(json(walkJson(w, iova)));
      for (const block of walkText(w, iova)) out(block);
    });
}
