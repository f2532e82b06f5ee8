/** `import`: kernel output into the ledger; src/cli/import.ts runs the importer and words its report. */
import { Option, type Command } from 'commander';
import { SEMANTICS } from '../../core/profile.js';
import type { CheckpointToOptions } from '../checkpoint.js';
import { newLedgerGuard, type Context } from '../context.js';
import type { ImportOptions } from '../import.js';
import { withProgress } from '../progress.js';
import { json } from '../render/format.js';

export function register(program: Command, { g, out, ledgerLib }: Context): void {
  program
    .command('import')
    .description('import kernel output: ftrace text, trace-cmd report, or dmesg (tp_printk and iommu.c debug lines)')
    .argument('<file>', 'a trace file, or - for standard input')
    .option('--profile <name>', 'the hardware (see `profiles`); by default inferred from the trace and said')
    .option('--kernel <release>', "the kernel release that produced the trace (e.g. 6.13): the profile behaves as that release's driver (see `profiles`)")
    .addOption(new Option('--semantics <s>', "override the profile's unmap behaviour").choices([...SEMANTICS]))
    .option('--domain <name>', 'put every record in this one domain')
    .addOption(new Option('--domain-by <how>', 'how to split records into domains').choices(['infer', 'dev']).default('infer').conflicts('domain'))
    .option('--strict', 'fail on the first malformed line and store nothing')
    .option('--follow', 'keep reading a growing file (Ctrl-C to stop)')
    .option('--caller <name>', 'caller name for records (default: the task name)')
    .option('--skew <us>', 'clock skew between CPUs to allow for when ordering records, in microseconds (default 20)')
    .option('--checkpoint-to <dir>', "after the run, write a checkpoint of the ledger's head into this folder (see `checkpoint`)")
    .option('--checkpoint-key <pem>', 'sign those checkpoints with this Ed25519 private key')
    .action(async (file: string, o: ImportOptions & { skew?: string } & CheckpointToOptions) => {
      const { Ledger } = await ledgerLib();
      const { importFile } = await import('../import.js');
      const cp = await import('../checkpoint.js');
      const plan = cp.planRunCheckpoint(o);
      const ledger = newLedgerGuard(g().db, () => new Ledger(g().db, { durable: true }));
      try {
        const { skew, checkpointTo: _to, checkpointKey: _key, ...rest } = o;
        const s = await withProgress('import', (tick) => importFile(ledger, file, { ...rest, skewUs: skew, onProgress: tick }));
        const written = plan && cp.writeRunCheckpoint(ledger.store, plan);
        if (g().json) return out(json(plan ? { ...s, checkpoint: written ?? null } : s));
        out(s.report.join('\n'));
        if (plan) out(cp.runCheckpointLine(written));
      } finally {
        ledger.close();
      }
    });
}
