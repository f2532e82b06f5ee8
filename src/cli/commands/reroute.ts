/** `reroute`: the routing of a ledger's imports recomputed into a new ledger (src/cli/reroute.ts). */
import { Option, type Command } from 'commander';
import type { Context } from '../context.js';
import { json } from '../render/format.js';
import { rerouteText } from '../render/reroute.js';

export function register(program: Command, { g, out }: Context): void {
  program
    .command('reroute')
    .description(
      "recompute the address spaces of the ledger's imports from their stored records (other --domain, --skew, merged spaces) into a new ledger, and compare",
    )
    .argument('[ledger]', 'the ledger to read (default: --db); it is never changed')
    .requiredOption('--out <path>', 'the new ledger file')
    .option('--domain <name>', 'put every record in this one domain')
    .addOption(
      new Option('--domain-by <how>', 'how to split records into domains (infer; dev cannot be recomputed: the ledger does not keep dev= fields)').conflicts(
        'domain',
      ),
    )
    .option('--skew <us>', 'clock skew between CPUs to allow for when ordering records, in microseconds (default 20)')
    .option('--merge <A,B>', "spaces that were one domain: B's records (and C's...) go to A, after routing; repeatable", (v: string, prev: string[] = []) => [
      ...prev,
      v,
    ])
    .addHelpText(
      'after',
      `
Every imported source is read back from its events (each keeps its record: addresses, sizes, the
kernel's unmapped_size, task, pid, CPU, time, file and line), its spaces and its mappings from
before the trace are dropped, and its records go through the importer's order, route and infer
stages again, in the order the trace printed them. Events that did not come from an import
(apply) are copied as they are, in their place. With the options of the import, the new ledger
equals the original.

Examples:
  iommu-ledger reroute --db trace.db --out same.db                # the same routing: equal projections
  iommu-ledger reroute trace.db --out one.db --domain vm0         # everything in one domain
  iommu-ledger reroute trace.db --out merged.db --merge as1,as3   # as3 was as1's domain all along`,
    )
    .action(async (ledger: string | undefined, o: { out: string; domain?: string; domainBy?: string; skew?: string; merge?: string[] }) => {
      const { rerouteLedger } = await import('../reroute.js');
      const r = await rerouteLedger(ledger ?? g().db, o);
      if (g().json) return out(json(r));
      out(rerouteText(r));
    });
}
