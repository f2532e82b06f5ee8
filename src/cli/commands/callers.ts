/** `callers`: per caller and call site, how its unmaps relate to its maps and what to change. */
import type { Command } from 'commander';
import { filterDomainOption, type Context } from '../context.js';
import { InputError } from '../errors.js';
import { callerNotes, callersTable, withWords } from '../render/callers.js';
import { json } from '../render/format.js';

export function register(program: Command, { io, g, out, queries }: Context): void {
  program
    .command('callers')
    .description('per caller and call site: how its unmaps relate to its maps, what they do under each unmap behaviour, and what to change')
    .addOption(filterDomainOption())
    .option('--caller <name>', 'only this caller')
    .option('--examples <n>', 'worst examples per site', '3')
    .addHelpText(
      'after',
      `
Classes: exact (one whole map), spans (several whole maps), cuts (inside one map),
straddles (across a map's edge), misses (nothing mapped); OTHERS' = reached another caller's map.
Each partial unmap is tried under legacy, split and strict unmap on the pages live at that moment.

Examples:
  iommu-ledger callers
  iommu-ledger callers --caller vfio --examples 10
  iommu-ledger callers --json | jq '.[] | {caller, site, readiness, advice}'`,
    )
    .action(async (o: { domain?: string; caller?: string; examples: string }) => {
      const examples = Number(o.examples);
      if (!Number.isInteger(examples) || examples < 0) throw new InputError(`--examples ${JSON.stringify(o.examples)}: give a whole number`);
      const q = await queries();
      const stale = q.staleProjections();
      if (stale) io.err(`warning: this ledger was upgraded (${stale}); run 'iommu-ledger rebuild' to fill in the caller analysis\n`);
      const c = q.callers({ ...(o.domain !== undefined ? { domain: o.domain } : {}), ...(o.caller !== undefined ? { caller: o.caller } : {}), examples });
      if (g().json) return out(json(c.map(withWords)));
      if (!c.length) return out(o.caller !== undefined ? `no commands by caller ${JSON.stringify(o.caller)}` : 'no map or unmap commands yet');
      out(callersTable(c));
      for (const x of c) for (const block of callerNotes(x)) out(block);
    });
}
