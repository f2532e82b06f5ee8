/** `explain`: a plain answer: when, by whom and why this IOVA is mapped or not. */
import type { Command } from 'commander';
import { addressArg, atOption, domainOption, type Context } from '../context.js';
import { explainJson, explainText } from '../render/explain.js';
import { json } from '../render/format.js';

export function register(program: Command, { g, out, queries }: Context): void {
  program
    .command('explain')
    .description('a plain answer: when, by whom and why this IOVA is mapped or not')
    .argument('<iova>')
    .addOption(domainOption())
    .addOption(atOption())
    .action(async (iovaText: string, o: { domain?: string; at?: string }) => {
      const e = (await queries()).explain(o.domain, addressArg(iovaText), o.at);
      if (g().json) return out(json(explainJson(e)));
      out(explainText(e));
    });
}
