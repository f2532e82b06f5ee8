/**
 * How queries bring projections that are behind the log to its head (ledger.ts, "deferred
 * projections"): the write path registers it when it loads. `queries.ts` does not import the write
 * path itself: it would load zod and the decider, about 100 ms of every query command's start-up,
 * for a case that only a crashed library writer leaves behind. A query that meets such a ledger
 * before the write path is loaded says so (`ProjectionsBehindError`); the command line then loads
 * it and opens the queries again (cli/context.ts).
 */
let catchUp: ((path: string) => void) | undefined;

/** Registered by ledger.ts: folds the events after the tables' checkpoint and writes their projections. */
export function registerCatchUp(fn: (path: string) => void): void {
  catchUp = fn;
}

/** The registered catch-up, if the write path is loaded. */
export function registeredCatchUp(): ((path: string) => void) | undefined {
  return catchUp;
}
