/** `state`: the pages mapped in a domain, now or as of a past event; `--hw` adds the page tables. */
import type { Command } from 'commander';
import { atOption, domainOption, type Context } from '../context.js';
import { json } from '../render/format.js';
import { hwJson, hwText, stateHeading, stateJson, stateTable } from '../render/state.js';

export function register(program: Command, { g, out, queries }: Context): void {
  program
    .command('state')
    .description('the pages mapped in a domain (now, or --at a past event)')
    .addOption(domainOption())
    .addOption(atOption())
    .option('--hw', 'also show the page-table structure (entries and tables per level)')
    .action(async (o: { domain?: string; at?: string; hw?: boolean }) => {
      const q = await queries();
      const s = q.stateAt(o.domain, o.at);
      const callers = q.callersOfRuns(s.runs);
      const callerOf = (p: number) => {
        const c = callers.get(p);
        if (c === undefined) throw new Error(`internal: the map event #${p} of a run is not stored`);
        return c;
      };
      if (g().json) {
        const payload = stateJson(s, callerOf);
        if (o.hw) payload.hardware = hwJson(q.hardware(o.domain, o.at));
        // The pages hold no bigints (runJson made their text): no replacer to call on every value.
        return out(o.hw ? json(payload) : JSON.stringify(payload, null, 2));
      }
      // Read before anything is printed: a hardware checkpoint that cannot be read leaves no half answer.
      const hw = o.hw ? hwText(q.hardware(o.domain, o.at)) : undefined;
      out(stateHeading(s));
      if (s.runs.n) out(stateTable(s.runs, callerOf));
      if (hw !== undefined) out(`\n${hw}`);
    });
}
