/** `demo`: a ledger from the bundled examples, and what it finds (src/cli/demo.ts). */
import type { Command } from 'commander';
import type { Context } from '../context.js';

export function register(program: Command, { g, out }: Context): void {
  program
    .command('demo')
    .description('build a ledger from the bundled examples and show what it finds (the first thing to run)')
    .option('--out <path>', 'where to write the demo ledger', './iommu-ledger-demo.db')
    .action(async (o: { out: string }) => {
      const { runDemo } = await import('../demo.js');
      await runDemo(o.out, out, g().json ?? false);
    });
}
