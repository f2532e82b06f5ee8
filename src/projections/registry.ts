/**
 * The registry of projections and the batch contract (docs/architecture.md, "Projections: the
 * registry and the batch contract").
 *
 * The write path is decide → append → project. `Ledger` decides each command with the core
 * (src/core) and appends its event (src/events/store.ts); every projection registered here then
 * receives the decided events as batches (`Decided`: the stored event, decoded, plus the facts the
 * core produced for it that the event does not carry) and writes its own tables. Append and
 * rebuild hand the registry the same items, so a projection has one code path for both.
 *
 * The contract a projection keeps:
 * - it writes only the tables it declares (no other projection writes them); it may update a row
 *   of an earlier projection's table only where its docs say so, and then order-independently,
 *   declaring that table in `updates` (the two are then rebuilt together: `rebuildSet`);
 * - `apply` gets items in position order, inside the caller's write transaction, in batches
 *   whose boundaries it must not depend on: one batch of 10 events leaves its tables exactly as
 *   ten batches of one (the property "rebuild equals incremental", test/ledger/projections.test.ts,
 *   checks it, append and rebuild cutting batches differently);
 * - what it sums over many events (counts per caller) it may gather over several batches and write
 *   in `flush`, which the ledger calls before each transaction commits (append and rebuild alike);
 * - it reads nothing of the core's state: what it needs from the moment of the event is a fact of
 *   the item, taken by the ledger before the next event changes it.
 *
 * Adding a projection is adding its file and listing it in `PROJECTIONS`. The one table not listed
 * by any projection here, `checkpoints`, is written by `Ledger` (`LEDGER_TABLES`).
 */
import type Database from 'better-sqlite3';
import type { HwStats, MapAsker, MapResult, Run, UnmapResult } from '../core/domain.js';
import type { StepCase, StepVerdict } from '../core/stepping.js';
import type { BehaviourEffect, UnmapAnalysis } from '../core/symmetry.js';
import type { DeviceFields, DomainCreatedFields, FaultFields, MapFields, Origin, UnmapFields, Who } from '../events/decode.js';
import type { PROJECTION_TABLES } from './corrupt.js';
import type { IntentWriter } from './intentsnap.js';
import type { RunWriter } from './runlog.js';
import { callerSymmetry } from './symmetry.js';
import { findings } from './findings.js';
import { faults } from './faults.js';
import { hardware } from './hardware.js';
import { intent } from './intent.js';
import { runs } from './runs.js';

export type ProjectionTable = (typeof PROJECTION_TABLES)[number];

/** What every decided event carries: the stored event and who it was for. */
interface DecidedBase {
  position: number;
  /** The domain's stream id (streams.id) and name. */
  domain: number;
  stream: string;
  /** Its place in the stream (from 1). */
  version: number;
  who: Who;
  from?: Origin;
  /** `who.caller` and `who.site` as the projections key them: interned, `(unknown)` and '' when absent. */
  caller: string;
  site: string;
  /**
   * The domain's hardware counters just after the event, on every HW_CHECKPOINT_EVERY-th event of
   * its stream (hardware.ts), else absent.
   */
  hardware?: HardwareFacts;
  /** How the event changed the domain's runs of pages (runs.ts), when it did. */
  runs?: RunChanges;
  /**
   * The domain's live runs just after the event (sorted by IOVA, in the run log's layout), on every
   * snapshotEvery-th event of its stream (`Ledger`), else absent.
   */
  runSnapshot?: RunWriter;
  /** How the event changed the callers' mapping intent (intent.ts), when it did. */
  intent?: IntentChanges;
  /** The domain's live intent just after the event, on every snapshotEvery-th event of its stream (`Ledger`), else absent. */
  intentSnapshot?: IntentSnapshot;
}

/**
 * A run of pages an event started (a map's, or a piece an unmap left): its runs row id (given by
 * the ledger in order of birth, the id SQLite would give it), the core's run (never changed once
 * made) and the caller of its map event (undefined when not known).
 */
export interface RunBirth {
  id: number;
  run: Run;
  caller: string | undefined;
}

/** The runs rows an event started and the ones it ended (by row id), all at its position. */
export interface RunChanges {
  born: RunBirth[];
  ended: number[];
}

/**
 * An interval of mapping intent an event started (a map's, or a piece an unmap left): its intent
 * row id (given by the ledger in order of birth, the id SQLite would give it), whose, the bytes
 * [start, end) and the map event it comes from.
 */
export interface IntentBirth {
  id: number;
  caller: string;
  start: bigint;
  end: bigint;
  mapPos: number;
}

/** The intent rows an event started and the ones it ended (by row id), all at its position. */
export interface IntentChanges {
  born: IntentBirth[];
  ended: number[];
}

/**
 * A domain's live intent at an event (intent_snapshots): its callers with live intervals (sorted),
 * the intervals by caller then IOVA in the snapshot's layout (intentsnap.ts), and the largest
 * intent row id given so far, in any domain (rows above it were born later).
 */
export interface IntentSnapshot {
  callers: string[];
  live: IntentWriter;
  maxId: number;
}

export interface HardwareFacts {
  stats: HwStats;
  /** IOTLB invalidations of the domain so far, and their bytes (held at 2^64 - 1). */
  invalidations: number;
  invalidatedBytes: bigint;
}

/** What an unmap would do under each unmap behaviour, on the pages live just before it. */
export interface Behaviours {
  legacy: BehaviourEffect;
  split: BehaviourEffect;
  strict: BehaviourEffect;
}

/** How an unmap relates to the maps live just before it (core/symmetry.ts), as the ledger decided it. */
export interface UnmapClassification {
  analysis: UnmapAnalysis;
  /** Caller and site of each map of `analysis.maps` (the map event's `who`; `(unknown)` when not known). */
  mapsBy: readonly MapAsker[];
  /** Whether a map it reaches is another caller's. */
  foreign: boolean;
  /**
   * For the unmaps that cut or straddle a map, miss, or remove whole maps across a hole: what it
   * would do under each behaviour; absent for exact mirrors and hole-free spans (the same under all).
   */
  behaviours?: Behaviours;
  /** For a miss of a non-empty request: the unmap whose over-unmap last removed the request's first page, else null. */
  missedAfter?: number | null;
}

/** Why an IO page fault happened, as the ledger found it from the pages and the runs history at the fault. */
export interface FaultCause {
  cause: 'mapped' | 'never-mapped' | 'use-after-unmap' | 'use-after-collateral-unmap' | 'use-after-destroy';
  /** The event that last removed the page (null when mapped or never mapped). */
  position: number | null;
  detail: Record<string, unknown>;
}

/** A piece of an unmap's collateral (pages removed outside its request), as it was when removed. */
export interface CollateralFinding {
  iova: bigint;
  size: bigint;
  /** The map event that had created the removed pages, and its caller. */
  mappedBy: number;
  mappedByCaller: string;
  /** Callers whose intent still covered the range when it was removed. */
  owners: string[];
}

/**
 * The stepped/harmful verdicts (core/stepping.ts) an event gave earlier over-unmaps of its domain
 * (a map into their collateral, a fault on it, their caller's next unmap); absent when none.
 */
interface Settles {
  settled?: StepVerdict[];
}

/** One decided event: the stored event (decoded body) and the facts of its decision. */
export type Decided = DecidedBase &
  (
    | ({ type: 'map'; body: MapFields; result: MapResult } & Settles)
    | ({
        type: 'unmap';
        body: UnmapFields;
        result: UnmapResult;
        /** The bytes the ledger records as unmapped (observed when imported) and the profile's prediction. */
        recorded: bigint;
        predicted: bigint;
        classification: UnmapClassification;
        /** Its collateral, with who mapped each piece and who still intended it, after its caller's own intent left the request. */
        collateral: CollateralFinding[];
        /** Its own verdict, when an over-unmap is decided at once (`other-owner`, `ended`). */
        verdict?: StepVerdict;
        /** Its open case, when an over-unmap is not decided yet (`pending`): as it was just after the unmap. */
        pending?: StepCase;
        /** Its caller's earlier pending over-unmaps whose collateral it asked for (not all of it): their cases just after it. */
        progressed?: StepCase[];
      } & Settles)
    | ({ type: 'fault'; body: FaultFields; cause: FaultCause } & Settles)
    | { type: 'device-attached' | 'device-detached'; body: DeviceFields }
    | { type: 'domain-created'; body: DomainCreatedFields }
    | { type: 'domain-destroyed'; body: Record<string, never> }
  );

/** A decided event without the fields every event has (what the ledger's decision adds to them). */
export type Decision = Decided extends infer D ? (D extends unknown ? Omit<D, keyof DecidedBase> : never) : never;

/** A projection opened on one database: its statements prepared. */
export interface ProjectionWriter {
  /** Writes the projection's rows for a batch of decided events (position order, inside the caller's transaction). */
  apply(batch: readonly Decided[]): void;
  /**
   * Writes what `apply` gathered and has not written yet (totals summed over several batches):
   * called before the caller's transaction commits. After it, the tables hold every batch applied.
   */
  flush?(): void;
}

/** A projection: its name, the tables it owns, and how to open it on a database. */
export interface Projection {
  readonly name: string;
  readonly tables: readonly ProjectionTable[];
  /**
   * Tables of other projections whose rows it updates (where their docs allow it): rebuilding
   * either rebuilds both (`rebuildSet`).
   */
  readonly updates?: readonly ProjectionTable[];
  /** Prepares its statements (statements.ts `statementPreparer`; again after `rebuild` recreated the tables). */
  open(db: Database.Database, path: string): ProjectionWriter;
}

/**
 * The registered projections, in the order they apply to each batch. `faults` after `findings`:
 * it updates the verdicts of findings rows, which must be there.
 */
export const PROJECTIONS: readonly Projection[] = [runs, intent, callerSymmetry, findings, faults, hardware];

/** The projection tables `Ledger` writes itself: the position the projections are at. */
export const LEDGER_TABLES: readonly ProjectionTable[] = ['checkpoints'];

/**
 * The projections to rebuild for the names given (`Ledger.rebuild`'s `projections`), in the
 * registry's order: each one named, and every projection that shares a table with one of them (it
 * owns a table the other updates, or updates one the other owns), and so on. A name that is not a
 * registered projection's throws, naming the projections there are.
 */
export function rebuildSet(names: readonly string[], projections: readonly Projection[] = PROJECTIONS): Projection[] {
  const unknown = names.filter((n) => !projections.some((p) => p.name === n));
  if (unknown.length) {
    throw new RangeError(
      `${unknown.map((n) => JSON.stringify(n)).join(', ')}: no such projection (the projections are ${projections.map((p) => p.name).join(', ')})`,
    );
  }
  const chosen = new Set(projections.filter((p) => names.includes(p.name)));
  const touches = (a: Projection, b: Projection) => (a.updates ?? []).some((t) => b.tables.includes(t));
  for (let grew = true; grew;) {
    grew = false;
    for (const p of projections) {
      if (chosen.has(p)) continue;
      if ([...chosen].some((c) => touches(p, c) || touches(c, p))) {
        chosen.add(p);
        grew = true;
      }
    }
  }
  return projections.filter((p) => chosen.has(p));
}

/**
 * Every registered projection opened on `db`: `apply` hands each batch to each of them in order.
 * `after` (a rebuild of some projections) gives a projection the events after a position only:
 * the others, whose tables stand there, catch up while the rebuilt ones take every event.
 */
export class ProjectionSet {
  private readonly writers: Array<{ w: ProjectionWriter; after: number }>;
  constructor(db: Database.Database, path: string, projections: readonly Projection[] = PROJECTIONS, after?: (p: Projection) => number) {
    this.writers = projections.map((p) => ({ w: p.open(db, path), after: after?.(p) ?? 0 }));
  }

  apply(batch: readonly Decided[]): void {
    if (batch.length === 0) return;
    for (const { w, after } of this.writers) {
      if (after === 0) w.apply(batch);
      else if (batch[batch.length - 1]!.position > after) w.apply(batch[0]!.position > after ? batch : batch.filter((e) => e.position > after));
    }
  }

  /** Every projection's gathered totals written (before the transaction commits). */
  flush(): void {
    for (const { w } of this.writers) w.flush?.();
  }
}
