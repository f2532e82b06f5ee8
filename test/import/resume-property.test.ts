/**
 * A crashed import, run again, ends with exactly the ledger of one uninterrupted import (issue 14
 * item 2), for generated multi-domain traces (test/import/gen: several address spaces, ties,
 * mappings from before the trace) and a crash after a random number of committed transactions of
 * a random number of lines: the transaction in progress is rolled back, as a SIGKILL would leave
 * it, and a new Ledger (a new process) imports the same file again. Every event and every
 * projection row must equal the uninterrupted import's, whether or not the crashed and the new
 * ledger defer their projections (the import writes them before it returns).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { importTrace } from '../../src/import/store.js';
import { Ledger } from '../../src/projections/ledger.js';
import { projectionSnapshot, tempDb } from '../ledger/helpers.js';
import { traceArb } from './gen/index.js';

class Crash extends Error {}

/** The events as stored, but for when they were written (recorded_at, and so the hashes). */
function eventsOf(l: Ledger): unknown[] {
  return l.db.prepare('SELECT position, stream, version, type, event_id, data FROM stored_events ORDER BY position').all();
}

describe('a crashed import, run again', () => {
  it('equals one uninterrupted import, event for event and row for row (property)', async () => {
    let crashes = 0;
    let multiSpaceCrashes = 0;
    await fc.assert(
      fc.asyncProperty(
        traceArb({}),
        fc.integer({ min: 3, max: 40 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        // The crashed import's ledger (and the one that runs it again) may defer its projections
        // (0: not): the process then dies with decisions unwritten, which the next one folds again.
        fc.constantFrom(0, 0, 1, 5, 100),
        async (t, chunkLines, crashPoint, defer) => {
          const profile = t.truth.domains[0]?.profile ?? 'intel-vtd';
          const dir = join(tempDb(), '..');
          const file = join(dir, 'gen.trace');
          writeFileSync(file, t.text);

          const whole = new Ledger(join(dir, 'whole.db'));
          let wholeSessions = 0;
          const realWhole = whole.sessionAsync.bind(whole);
          whole.sessionAsync = ((fn: Parameters<Ledger['sessionAsync']>[0], o?: Parameters<Ledger['sessionAsync']>[1]) =>
            realWhole(async (add) => {
              wholeSessions++;
              return fn(add);
            }, o)) as Ledger['sessionAsync'];
          await importTrace(whole, file, { profile, chunkLines });
          // Killed while one of the import's transactions was in progress (0: the first).
          const crashAfter = Math.floor(crashPoint * wholeSessions);
          const want = { events: eventsOf(whole), projections: projectionSnapshot(whole.db) };
          whole.close();

          // The same file under the same name in another folder: the same provenance.
          const dir2 = join(tempDb(), '..');
          const file2 = join(dir2, 'gen.trace');
          copyFileSync(file, file2);
          const crashed = new Ledger(join(dir2, 'l.db'), { deferProjections: defer });
          const real = crashed.sessionAsync.bind(crashed);
          let sessions = 0;
          crashed.sessionAsync = ((fn: Parameters<Ledger['sessionAsync']>[0], o?: Parameters<Ledger['sessionAsync']>[1]) =>
            real(async (add) => {
              const out = await fn(add);
              if (++sessions > crashAfter) throw new Crash(); // killed before this transaction committed
              return out;
            }, o)) as Ledger['sessionAsync'];
          let crashedAt: number | undefined;
          try {
            await importTrace(crashed, file2, { profile, chunkLines });
          } catch (e) {
            if (!(e instanceof Crash)) throw e;
            crashedAt = crashed.lastPosition;
          }
          crashed.store.close(); // the process dies: nothing more is written

          const again = new Ledger(join(dir2, 'l.db'), { deferProjections: defer });
          await importTrace(again, file2, { profile, chunkLines });
          const got = { events: eventsOf(again), projections: projectionSnapshot(again.db) };
          again.close();
          if (crashedAt !== undefined) {
            expect(crashedAt).toBeLessThan(want.events.length);
            crashes++;
            if (new Set((want.projections.runs as Array<{ domain: unknown }>).map((r) => r.domain)).size > 1) multiSpaceCrashes++;
          }
          expect(got.events).toEqual(want.events);
          expect(got.projections).toEqual(want.projections);
        },
      ),
      { numRuns: Number(process.env.PROP_RUNS ?? 25), seed: 14 },
    );
    // The property is about crashes: every run crashes, several of them in multi-space traces.
    expect(crashes).toBe(Number(process.env.PROP_RUNS ?? 25));
    expect(multiSpaceCrashes).toBeGreaterThan(2);
  }, 300_000);
});
