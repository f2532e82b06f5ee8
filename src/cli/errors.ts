/** Errors of the command line that are the user's to fix (exit code 2). */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

/** Names of the errors that mean "bad input or usage", from every layer (checked by name so the CLI need not load those layers to recognise them). */
export const USER_ERRORS = new Set([
  'InputError',
  'LedgerError',
  'QueryError',
  'CommandError',
  'AddressError',
  'ProfileError',
  'LedgerOpenError',
  'ConcurrencyError',
  'MigrationError',
  'ReadError',
  'CheckpointError',
]);
