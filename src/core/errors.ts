/**
 * The errors iommu-ledger raises for a user to read, each with the exit code of the command line:
 *
 * - 1: the ledger failed a check (an event changed outside iommu-ledger, a projection that cannot
 *   be read, a broken hash chain, a damaged file), or findings under `--fail-on`;
 * - 2: bad input or usage; the message says what to do;
 * - 75: temporary; run it again.
 *
 * Every layer's user-facing errors extend `LedgerFault` and declare their code; the command line
 * prints the message and exits with `exitCodeOf(e)`, and anything else is a bug (exit 70, with its
 * stack). Here, in the lowest layer and without imports, so that every layer can extend it and
 * the command line loads it up front without loading the layers whose errors it reports.
 */

export type ExitCode = 1 | 2 | 75;

/**
 * The mark of a LedgerFault, under a global symbol: an error made by another copy of this module
 * (a migration script's `iommu-ledger/migrate`, which is `dist/src`, beside the bundled command)
 * has it too, where `instanceof` would say no.
 */
const FAULT = Symbol.for('iommu-ledger.fault');

export abstract class LedgerFault extends Error {
  /** The exit code of the command line when this error ends a command. */
  abstract readonly exitCode: ExitCode;
}

Object.defineProperty(LedgerFault.prototype, FAULT, { value: true });

/** The exit code an error carries; undefined when it is not a LedgerFault (a bug, or another library's error). */
export function exitCodeOf(e: unknown): ExitCode | undefined {
  if (typeof e !== 'object' || e === null || (e as { [FAULT]?: unknown })[FAULT] !== true) return undefined;
  return (e as LedgerFault).exitCode;
}
