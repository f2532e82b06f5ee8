/**
 * iommu-ledger on the command line. Exit codes: 0 fine, 1 findings under --fail-on (or a
 * failed verify/check), 2 usage or input errors (the message says what to do), 75 the ledger
 * was busy (another writer held it too long: retry), 70 a bug.
 */
import { CommanderError } from 'commander';
import { exitCodeOf } from '../core/errors.js';
import type { Globals, IO } from './context.js';
import { buildProgram } from './program.js';

export type { IO };

const processIO: IO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/** Runs one command line (arguments after the program name); resolves to the exit code. */
export async function run(argv: string[], io: IO = processIO): Promise<number> {
  const program = buildProgram(io);
  // The subcommand that runs: a fault's message says what it left as it was.
  let command: string | undefined;
  program.hook('preAction', (_program, action) => {
    command = action.name();
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    // Faults of the disk, the file system or the ledger file, mapped in events/io-errors.ts: the
    // ledger was busy, the disk is full, an I/O error (75: run it again); read-only for this user
    // (2); the file is damaged (1: `verify` says what can still be read).
    const { describeFault, isSqliteError } = await import('../events/io-errors.js');
    const fault = describeFault(e, { db: program.opts<Globals>().db, ...(command !== undefined ? { command } : {}) });
    if (fault?.kind === 'damaged' && command === 'verify') {
      const { damageReport } = await import('../events/damage.js');
      let r: ReturnType<typeof damageReport> | undefined;
      try {
        r = damageReport(fault.path, fault.reason);
      } catch {
        // the report could not be made: the fault's own line still says what happened
      }
      if (r) {
        io.out(`${program.opts<Globals>().json ? JSON.stringify(r, null, 2) : r.lines.join('\n')}\n`);
        io.err(`iommu-ledger: ${r.message}\n`);
        return 1;
      }
    }
    if (fault) {
      io.err(`iommu-ledger: ${fault.message}\n`);
      return fault.exitCode;
    }
    // Every other error meant for the user carries its exit code (core/errors.ts): a finding or a
    // ledger found broken (an event changed outside iommu-ledger, a projection that cannot be
    // read, a hash chain `rebuild` refuses to follow) 1, bad input or usage 2.
    const code = exitCodeOf(e);
    if (code !== undefined) {
      io.err(`iommu-ledger: ${(e as Error).message}\n`);
      return code;
    }
    // A projection table, index or column dropped outside iommu-ledger (a question reads it): `rebuild` recreates it.
    if (isSqliteError(e)) {
      const { missingProjection, missingProjectionError } = await import('../projections/corrupt.js');
      const missing = missingProjection((e as Error).message);
      if (missing) {
        io.err(`iommu-ledger: ${missingProjectionError(program.opts<Globals>().db, missing).message}\n`);
        return 1;
      }
    }
    io.err(`iommu-ledger: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return 70;
  }
}

/** A reader that goes away early (`| head`) is not an error. */
export function quietOnClosedPipe(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}
