import { LedgerFault } from '../core/errors.js';

/** Errors of the command line that are the user's to fix (exit code 2). */
export class InputError extends LedgerFault {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

/** Findings under --fail-on, or a failed check (verify, migrate --fail-on-regression): exit code 1, not an error. */
export class Findings extends LedgerFault {
  readonly exitCode = 1;
}
