/**
 * The commander program of one run: the global options and help, then each command from its
 * module in `commands/` (the order here is the order of `--help`). The command modules are small
 * and loaded up front; each loads the layers it needs when it runs.
 */
import { Command, Option } from 'commander';
import * as apply from './commands/apply.js';
import * as audit from './commands/audit.js';
import * as blame from './commands/blame.js';
import * as callers from './commands/callers.js';
import * as checkpoint from './commands/checkpoint.js';
import * as demo from './commands/demo.js';
import * as diff from './commands/diff.js';
import * as explain from './commands/explain.js';
import * as history from './commands/history.js';
import * as importTrace from './commands/import.js';
import * as migrate from './commands/migrate.js';
import * as profiles from './commands/profiles.js';
import * as rebuild from './commands/rebuild.js';
import * as replay from './commands/replay.js';
import * as report from './commands/report.js';
import * as reroute from './commands/reroute.js';
import * as state from './commands/state.js';
import * as verify from './commands/verify.js';
import * as walk from './commands/walk.js';
import { createContext, type CommandModule, type IO } from './context.js';

const COMMANDS: CommandModule[] = [
  // writing
  apply,
  importTrace,
  // questions
  state,
  walk,
  history,
  blame,
  explain,
  diff,
  audit,
  callers,
  report,
  // integrity and what-if
  verify,
  checkpoint,
  rebuild,
  replay,
  reroute,
  migrate,
  profiles,
  demo,
];

export function buildProgram(io: IO): Command {
  const program = new Command();
  program
    .name('iommu-ledger')
    .description(
      'An auditable, event-sourced ledger of IOMMU map/unmap commands: import kernel traces, ask when, by whom and why a region was over-unmapped or left mapped.',
    )
    .addOption(new Option('--db <path>', 'ledger file').default(process.env.IOMMU_LEDGER_DB || './iommu-ledger.db', '$IOMMU_LEDGER_DB or ./iommu-ledger.db'))
    .option('--json', 'machine-readable output (addresses as "0x" strings)')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => io.err(s), writeOut: (s) => io.out(s) })
    .addHelpText(
      'after',
      `
  Examples:
    iommu-ledger demo                                  build a ledger from examples/ and audit it
    iommu-ledger import /sys/kernel/tracing/trace --profile intel-vtd
    iommu-ledger apply examples/scenario.jsonl
    iommu-ledger audit over-unmaps --fail-on over-unmap
    iommu-ledger explain 0x202010 --domain gpu0
    iommu-ledger state --domain gpu0 --at 5 --json
    iommu-ledger replay --semantics strict --out strict.db`,
    );
  const ctx = createContext(program, io);
  for (const command of COMMANDS) command.register(program, ctx);
  return program;
}
