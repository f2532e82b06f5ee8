/** `history`: every event that touched an IOVA range, in order. */
import type { Command } from 'commander';
import { addressArg, atOption, domainOption, sizeArg, type Context } from '../context.js';
import { InputError } from '../errors.js';
import { json } from '../render/format.js';
import { historyText } from '../render/history.js';

export function register(program: Command, { g, out, queries }: Context): void {
  program
    .command('history')
    .description('every event that touched an IOVA range, in order')
    .argument('<iova>')
    .argument('[size]', 'range size (default: one byte)')
    .addOption(domainOption())
    .addOption(atOption())
    .action(async (iovaText: string, sizeText: string | undefined, o: { domain?: string; at?: string }) => {
      const start = addressArg(iovaText);
      const bytes = sizeText === undefined ? 1n : sizeArg(sizeText);
      if (bytes === 0n) throw new InputError(`size ${JSON.stringify(sizeText)}: give at least one byte`);
      // A range past the end of the 64-bit space is cut there (nothing can be mapped beyond it).
      let end = start + bytes;
      if (end > 1n << 64n) end = 1n << 64n;
      const h = (await queries()).history(o.domain, start, end, o.at);
      if (g().json) return out(json(h.events.map((e) => ({ ...e }))));
      for (const block of historyText(h, start, end)) out(block);
    });
}
