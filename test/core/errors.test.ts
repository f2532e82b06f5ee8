/** Errors carry their exit code (issue 15): each user-facing class declares it; nothing is looked up by name. */
import { describe, expect, it } from 'vitest';
import { AddressError } from '../../src/core/address.js';
import { exitCodeOf, LedgerFault } from '../../src/core/errors.js';
import { ProfileError } from '../../src/core/profile.js';
import { CheckpointError } from '../../src/events/checkpoint.js';
import { LedgerOpenError } from '../../src/events/db.js';
import { LedgerDamagedError } from '../../src/events/io-errors.js';
import { CommandError } from '../../src/events/schema.js';
import { ConcurrencyError } from '../../src/events/store.js';
import { CorruptEventError } from '../../src/events/stored.js';
import { ReadError } from '../../src/import/read.js';
import { TraceInputError } from '../../src/import/store.js';
import { MigrationError } from '../../src/migrate/define.js';
import { BrokenChainError, CorruptProjectionError } from '../../src/projections/corrupt.js';
import { LedgerError } from '../../src/projections/ledger.js';
import { QueryError } from '../../src/projections/queries.js';
import { Findings, InputError } from '../../src/cli/errors.js';

describe('exit codes carried by errors', () => {
  it('every user-facing error declares its code', () => {
    const chain = { ok: false, events: 3, firstBad: 2, message: 'position 2: changed' } as never;
    const cases: Array<[LedgerFault, number]> = [
      [new InputError('x'), 2],
      [new TraceInputError('x'), 2],
      [new ReadError('x'), 2],
      [new LedgerError('x', 0), 2],
      [new QueryError('x'), 2],
      [new CommandError('x'), 2],
      [new AddressError('x'), 2],
      [new ProfileError('x'), 2],
      [new LedgerOpenError('x'), 2],
      [new ConcurrencyError('d', 1, 2), 2],
      [new MigrationError('x'), 2],
      [new CheckpointError('x'), 2],
      [new CorruptEventError('x'), 1],
      [new CorruptProjectionError('x'), 1],
      [new BrokenChainError(chain), 1],
      [new LedgerDamagedError('f', 'x'), 1],
      [new Findings('x'), 1],
    ];
    for (const [e, code] of cases) {
      expect(e).toBeInstanceOf(LedgerFault);
      expect([e.name, exitCodeOf(e)]).toEqual([e.name, code]);
    }
  });

  it('anything else carries none (exit 70 on the command line)', () => {
    for (const e of [new Error('x'), new TypeError('x'), Object.assign(new Error('x'), { exitCode: 2 }), 'text', undefined, null, 2]) {
      expect(exitCodeOf(e)).toBeUndefined();
    }
  });

  it('an error from another copy of the module is recognised (a migration script beside the bundle)', async () => {
    const copy = (await import(/* @vite-ignore */ `../../src/core/errors.js?copy=${Date.now()}`)) as typeof import('../../src/core/errors.js');
    expect(copy.LedgerFault).not.toBe(LedgerFault);
    class Elsewhere extends copy.LedgerFault {
      readonly exitCode = 2;
    }
    const e = new Elsewhere('made by the other copy');
    expect(e).not.toBeInstanceOf(LedgerFault);
    expect(exitCodeOf(e)).toBe(2);
  });

  it('a refused command carries its index and its reason; the message begins with the command', () => {
    const e = new LedgerError('domain: "x" was destroyed', 4);
    expect([e.index, e.reason, e.message]).toEqual([4, 'domain: "x" was destroyed', 'command 5: domain: "x" was destroyed']);
    expect(new LedgerError('domain: no domain "x" in this ledger').message).toBe('domain: no domain "x" in this ledger');
  });
});
