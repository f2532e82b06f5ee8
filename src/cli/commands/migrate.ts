/** `migrate`: make callers symmetric by a script or a built-in strategy, verified by replay (src/cli/migrate.ts). */
import type { Command } from 'commander';
import { Findings, type Context } from '../context.js';
import { json } from '../render/format.js';

export function register(program: Command, { g, out }: Context): void {
  program
    .command('migrate')
    .description(
      'make callers symmetric (unmap exactly what was mapped) by a script or a built-in strategy, into a new ledger, verified by replay under strict unmap',
    )
    .option('--script <file>', 'a migration module (TypeScript or JavaScript) whose default export is defineMigration({...})')
    .option(
      '--strategy <name>',
      'a built-in strategy for every command: split-maps, widen-unmaps, unmap-as-mapped (callers that step by the returned size), flag (or keep: copy as is)',
    )
    .option('--caller <name>', "only this caller's commands are migrated; the others are kept as they are")
    .requiredOption('--out <path>', 'the migrated ledger (a new file; the source is never changed)')
    .option('--report <stem>', 'write the report to STEM.md and STEM.json (default: next to --out)')
    .option('--fail-on-regression', 'exit 1 if a check finds a regression (for CI)')
    .addHelpText(
      'after',
      `
Checks (printed, and in the report), per caller and in total: 1. no map the source stored as ok
is refused; 2. no unmap that removed something removes nothing (unless the same caller's earlier
unmap removed those pages ahead of the source), strict unmap refuses none the source carried out,
and none removes pages the source still maps beyond the steps of the same teardown; 3. each
domain maps the same pages at the end; 4. every fault hits a mapped page in both ledgers or in
neither; 5. every caller believes the same ranges mapped at the end; 6. nothing flagged,
over-unmapped or left mapped. A difference that follows from a bug fixed, or from a command kept
as it is, is no regression. Also the cost.

Examples:
  iommu-ledger migrate --strategy split-maps --out migrated.db
  iommu-ledger migrate --strategy widen-unmaps --caller kvm --out migrated.db --fail-on-regression
  iommu-ledger migrate --strategy unmap-as-mapped --caller vfio-dma --out migrated.db
  iommu-ledger --db iommu-ledger-demo.db migrate --script scripts/migrations/demo-symmetric.ts --out migrated.db`,
    )
    .action(async (o: { script?: string; strategy?: string; caller?: string; out: string; report?: string; failOnRegression?: boolean }) => {
      const { runMigrate } = await import('../migrate.js');
      const r = await runMigrate(g().db, o);
      if (g().json) out(json(r.report));
      else out(r.summary.join('\n'));
      if (o.failOnRegression && !r.result.passed) throw new Findings('--fail-on-regression: the migrated history does not verify (see the report)');
    });
}
