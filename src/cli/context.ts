/**
 * What each command module (`commands/<name>.ts`) gets from the program: where to print, the global
 * options, the layers it loads on demand, and the argument parsers and options that several
 * commands share. Loaded up front with every command: it imports only what `main.ts` always loaded.
 */
import { existsSync, rmSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { parseAddress, parseSize } from '../core/address.js';
import { LedgerFault } from '../core/errors.js';
import type { EventStore } from '../events/store.js';
import type { Queries } from '../projections/queries.js';
import { InputError } from './errors.js';

// Heavier layers load on demand: a query should not pay for zod, an import not for the queries.
const ledgerLib = () => import('../projections/ledger.js');
const queriesLib = () => import('../projections/queries.js');

/** Where a run writes: the process's streams, or a test's buffers. */
export interface IO {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** The global options, after parsing. */
export interface Globals {
  db: string;
  json?: boolean;
}

export interface Context {
  io: IO;
  /** The global options (`--db`, `--json`) of this run. */
  g(): Globals;
  /** Prints a block of text to standard output, with a newline unless it ends with one. */
  out(s: string): void;
  /** The ledger's queries; `builder` also loads the query builder the audit listings use. */
  queries(opts?: { builder?: boolean }): Promise<Queries>;
  /** The write path (`projections/ledger.ts`), loaded on first use. */
  ledgerLib: typeof ledgerLib;
}

/** A command module: adds its command (options, help, action) to the program. */
export interface CommandModule {
  register(program: Command, ctx: Context): void;
}

export function createContext(program: Command, io: IO): Context {
  const g = (): Globals => program.opts<Globals>();
  return {
    io,
    g,
    out: (s) => {
      io.out(s.endsWith('\n') ? s : `${s}\n`);
    },
    queries: async (opts = {}) => {
      const lib = await queriesLib();
      if (opts.builder) await lib.loadQueryBuilder();
      try {
        return new lib.Queries(g().db);
      } catch (e) {
        if (!(e instanceof lib.ProjectionsBehindError)) throw e;
        // A library writer deferred its projections and stopped: the write path brings them up to date.
        await ledgerLib();
        return new lib.Queries(g().db);
      }
    },
    ledgerLib,
  };
}

/** Exit with code 1 (findings) without treating it as an error. */
export class Findings extends LedgerFault {
  readonly exitCode = 1;
}

/** An address argument (`what` names it in the error). */
export function addressArg(v: string, what = 'IOVA'): bigint {
  try {
    return parseAddress(v);
  } catch (e) {
    throw new InputError(`${what} ${JSON.stringify(v)}: ${(e as Error).message}`);
  }
}

/** A size argument. */
export function sizeArg(v: string): bigint {
  try {
    return parseSize(v);
  } catch (e) {
    throw new InputError(`size ${JSON.stringify(v)}: ${(e as Error).message}`);
  }
}

export const atOption = () => new Option('--at <point>', 'as of: an event position (1234), trace seconds (511.10) or an ISO time');
export const domainOption = () => new Option('--domain <name>', 'the domain (optional when the ledger holds one)');
export const filterDomainOption = () => new Option('--domain <name>', 'only this domain (default: every domain)');

/**
 * Opens a ledger for writing; if this run created the file and nothing got stored (the input
 * failed), the empty file is removed again when it is closed, so a typo leaves no ledger behind.
 * Only when no other process uses it: another `apply` may have opened the new file meanwhile,
 * and removing it would lose what that one stores. So the events are counted afresh (another
 * process's commits included), and after closing, a `-wal` file still there means another
 * connection is open (SQLite removes it when the last connection closes): the file stays.
 */
export function newLedgerGuard<L extends { close(): void; store: EventStore }>(path: string, open: () => L): L {
  const existed = existsSync(path);
  const ledger = open();
  if (!existed) {
    const close = ledger.close.bind(ledger);
    ledger.close = () => {
      let empty = false;
      try {
        empty = ledger.store.isEmpty();
      } catch {
        // unreadable after a fault: kept, and the fault is what the command reports
      }
      close();
      if (empty && !existsSync(`${path}-wal`)) for (const suffix of ['', '-shm']) rmSync(path + suffix, { force: true });
    };
  }
  return ledger;
}
