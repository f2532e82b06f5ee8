/** `report`: one self-contained HTML file of the address spaces over time (src/cli/report.ts, docs/report.md). */
import type { Command } from 'commander';
import type { Context } from '../context.js';
import { InputError } from '../errors.js';
import { json } from '../render/format.js';

export function register(program: Command, { g, out }: Context): void {
  program
    .command('report')
    .description('write one HTML file (offline, self-contained) with a timeline of every address space, its findings and faults')
    .requiredOption('--out <file>', 'the HTML file to write')
    .option('--domain <name>', 'only this domain')
    .option('--from <position>', 'first event position to show')
    .option('--to <position>', 'last event position to show')
    .action(async (o: { out: string; domain?: string; from?: string; to?: string }) => {
      const pos = (v: string | undefined, what: string) => {
        if (v === undefined) return undefined;
        if (!/^\d+$/.test(v)) throw new InputError(`${what} ${JSON.stringify(v)}: an event position (a whole number) is expected`);
        return Number(v);
      };
      const from = pos(o.from, '--from');
      const to = pos(o.to, '--to');
      if (from !== undefined && to !== undefined && from > to) throw new InputError(`--from ${from} is after --to ${to}`);
      const { writeReport } = await import('../report.js');
      const r = writeReport(g().db, o.out, {
        ...(o.domain !== undefined ? { domain: o.domain } : {}),
        ...(from !== undefined ? { from } : {}),
        ...(to !== undefined ? { to } : {}),
      });
      if (g().json) return out(json(r));
      out(
        `wrote ${r.out}: ${r.domains} address space(s), ${r.runs} runs of pages, ${r.findings} finding(s) (${r.explained} explained in the file), ${(r.bytes / 1024).toFixed(0)} KiB; open it in a browser (it fetches nothing)`,
      );
    });
}
