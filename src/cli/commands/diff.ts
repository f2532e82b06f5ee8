/** `diff`: pages added and removed between two points. */
import type { Command } from 'commander';
import { domainOption, type Context } from '../context.js';
import { diffText } from '../render/diff.js';
import { json } from '../render/format.js';

export function register(program: Command, { g, out, queries }: Context): void {
  program
    .command('diff')
    .description('pages added and removed between two points')
    .argument('<from>', 'position or time')
    .argument('[to]', 'position or time (default: now)')
    .addOption(domainOption())
    .action(async (from: string, to: string | undefined, o: { domain?: string }) => {
      const d = (await queries()).diff(o.domain, from, to);
      if (g().json) return out(json(d));
      for (const line of diffText(d)) out(line);
    });
}
