/**
 * A domain's decision state (`DomainState`): what the ledger keeps of each domain to decide its
 * next events, made empty for a new domain (`newDomainState`) or taken back from the projection
 * tables when a domain is opened (`loadDomainState`: docs/architecture.md, "Projections: the
 * registry and the batch contract"). The ledger (ledger.ts) decides with it; the projections never
 * read it (they get what they need as facts of each decided event).
 */
import type Database from 'better-sqlite3';
import { hex } from '../core/address.js';
import { Domain, type MapAsker, type MapOrigin, type Run } from '../core/domain.js';
import { IntervalSet } from '../core/intervals.js';
import { SteppingTracker } from '../core/stepping.js';
import { profileFromDescriptor, repeatOf, type Profile, type ProfileDescriptor } from '../core/profile.js';
import { decodeStoredEvent, type EventType, type Who } from '../events/schema.js';
import { decodeBody, type DecodedBody } from '../events/decode.js';
import { CorruptEventError, eventName, shown, unfitEvent } from '../events/stored.js';
import { CorruptProjectionError, projectionJson, unreadable } from './corrupt.js';
import { fromDb, toDb } from './codec.js';
import { pageSizeOf, runLogComplete, runsByRows, runsFromLog } from './runlog.js';
import { decodeIntent } from './intentsnap.js';
import { RecentRemovals } from './removals.js';
import type { EventRow, IntentRowRaw, LedgerStatements } from './statements.js';
import { stepCaseOf } from './findings.js';

/** The caller of an event that names none. */
export const UNKNOWN_CALLER = '(unknown)';

/** Where a domain's state is read from: the ledger's connection and statements, and the position the projection tables are at. */
export interface StateSource {
  db: Database.Database;
  s: LedgerStatements;
  lastPosition: number;
}

/**
 * What the ledger keeps of one domain to decide its next events: its core (live pages, each run
 * with its runs row and birth in Run.row and Run.from, each map origin with its caller in
 * MapOrigin.by), its callers' intent, the over-unmaps not yet settled, and counters.
 */
export interface DomainState {
  id: number;
  name: string;
  profile: Profile;
  version: number;
  destroyed: boolean;
  core: Domain;
  intent: Map<string, IntervalSet>;
  /** Longest run ever stored (bounds IOVA look-ups in the runs table). */
  maxSpan: bigint;
  invalidations: number;
  invalidatedBytes: bigint;
  /** Runs ended since the projections were last flushed (their rows may not say so yet), in order of their end. */
  endedPending: RecentRemovals;
  /** Over-unmaps not yet known to be stepped or harmful (core/stepping.ts). */
  steps: SteppingTracker;
}

/** A stored event read back by the ledger: its typed body, who asked, and the body as stored. */
export type StoredRead = DecodedBody & { who: Who; stored: Record<string, unknown> };

/** A domain's decision state, empty: its core made from the profile, no intent, no open cases. */
export function newDomainState(id: number, name: string, profile: Profile, version: number, destroyed: boolean): DomainState {
  return {
    id,
    name,
    profile,
    version,
    destroyed,
    core: new Domain(profile),
    intent: new Map(),
    maxSpan: 0n,
    invalidations: 0,
    invalidatedBytes: 0n,
    endedPending: new RecentRemovals(),
    steps: new SteppingTracker(),
  };
}

/**
 * One domain's decision state taken back from the projection tables (undefined when the ledger has
 * no such domain): its profile from its domain-created event, its live runs from the run log, its
 * open over-unmaps from the findings' pending rows, its callers' intent from its intent snapshot
 * and the rows since.
 */
export function loadDomainState(src: StateSource, name: string): DomainState | undefined {
  const { db, s } = src;
  const raw = s.stream.get(name);
  if (!raw) return undefined;
  const row = { id: Number(raw.id), version: Number(raw.version), destroyed_at: raw.destroyed_at, max_span: raw.max_span };
  // Destroyed by an event the projections have not reached yet (ledger.ts, deferred projections):
  // not destroyed at the position the state is taken at; the catch-up folds the destroy again.
  const destroyed = row.destroyed_at !== null && Number(row.destroyed_at) <= src.lastPosition;
  // The profile as the hashed domain-created event says (streams.profile is only a copy).
  const created = s.createdEvent.get(row.id);
  if (created && created.type !== 'domain-created') {
    throw unfitEvent(eventName(created.position, created.event_id), `the first event of domain ${name} is a ${shown(created.type)} event, not domain-created`);
  }
  const desc = created
    ? (decodeEventRow(created) as StoredRead & { type: 'domain-created' }).body.profile
    : projectionJson<ProfileDescriptor>(() => `the profile of domain ${name} (streams.profile)`, raw.profile);
  const profile = profileOfStream(name, desc);
  const c = newDomainState(row.id, name, profile, row.version, destroyed);
  // The live runs from the run log (the runs table while the log is not filled in). Each one's
  // map event (its region and caller) is read when first needed: an append touches few of
  // them, and reading them all took ~0.4 s for the 42,000 of a million-event ledger.
  const cols = (runLogComplete(db) ? runsFromLog : runsByRows)(db, row.id, src.lastPosition);
  const origins = new Map<number, MapOrigin>();
  const readOrigin = originReader(s);
  const loaded: Run[] = [];
  for (let i = 0; i < cols.n; i++) {
    const mapPos = cols.mapPos[i]!;
    let origin = origins.get(mapPos);
    if (!origin) {
      const k = cols.caller[i]!;
      origin = new StoredOrigin(mapPos, cols.prot[i]!, readOrigin, k ? cols.names[k - 1] : undefined);
      origins.set(mapPos, origin);
    }
    const shift = cols.shift[i]!;
    const lv = cols.level[i]!;
    if (profile.format.levels[lv] === undefined || shift < profile.format.levels[lv]!.shift) {
      throw unreadable(
        `the live runs of domain ${name} (run_log and run_snapshots)`,
        `a run at ${hex(cols.iova[i]!)} has level ${lv} and page shift ${shift}, which the ${profile.format.name} format has not`,
      );
    }
    const run: Run = {
      iova: cols.iova[i]!,
      paddr: cols.paddr[i]!,
      pageSize: pageSizeOf(shift),
      count: BigInt(cols.count[i]!),
      level: lv,
      repeat: repeatOf(shift, profile.format.levels[lv]!.shift),
      origin,
      row: cols.id[i]!,
      from: cols.from[i]!,
    };
    loaded.push(run);
  }
  try {
    c.core.load(loaded);
  } catch (e) {
    if (e instanceof CorruptProjectionError || e instanceof CorruptEventError) throw e;
    throw unreadable(`the live runs of domain ${name} (run_log and run_snapshots)`, (e as Error).message);
  }
  c.maxSpan = fromDb(row.max_span);
  c.steps.load(s.pendingSteps.all(row.id).map((r) => stepCaseOf(r.position, intern(r.caller), r.step_state)));
  c.invalidations = Number(raw.invalidations);
  c.invalidatedBytes = fromDb(raw.invalidated_bytes);
  if (loadIntentFromSnapshot(s, c)) return c;
  // No snapshot: rows as arrays, 4096 at a time in (caller, iova) order: a ledger can hold
  // hundreds of thousands of live intent rows, and an object per row (or an iterator) cost
  // ~1.3x as much. A caller's intervals never overlap, so (caller, iova) identifies a row.
  const intents = db
    .prepare<[domain: number, caller: string, iova: bigint], IntentRowRaw>(
      `SELECT id, caller, iova, iova_last, coalesce(map_pos, valid_from) FROM intent INDEXED BY intent_caller
        WHERE domain = ? AND (caller, iova) >= (?, ?) AND valid_to IS NULL ORDER BY caller, iova LIMIT 4096`,
    )
    .raw(true)
    .safeIntegers(true);
  let from: [string, bigint] = ['', toDb(0n)];
  for (;;) {
    const rows = intents.all(row.id, from[0], from[1]);
    let set: IntervalSet | undefined;
    let setOf = '';
    for (const r of rows) {
      if (set === undefined || r[1] !== setOf) {
        setOf = r[1];
        set = intentOf(c, intern(setOf));
      }
      set.load(fromDb(r[2]), fromDb(r[3]) + 1n, Number(r[4]), Number(r[0]));
    }
    if (rows.length < 4096) break;
    const last = rows[rows.length - 1]!;
    from = [last[1], last[2] + 1n];
  }
  return c;
}

/**
 * A domain's live intent from its latest snapshot: the snapshot's intervals that have not
 * ended since, and the rows born after it. False when the domain has no snapshot (a ledger
 * from before schema 6, or fewer events than the cadence).
 */
function loadIntentFromSnapshot(s: LedgerStatements, c: DomainState): boolean {
  const snap = s.intentSnap.get(c.id);
  if (!snap) return false;
  const ended = new Set(s.intentEndedSince.all(c.id, snap.position));
  const what = () => `the intent snapshot of domain ${c.name} at event #${snap.position} (intent_snapshots)`;
  const callers = projectionJson<unknown>(what, snap.callers);
  if (!Array.isArray(callers) || !callers.every((x) => typeof x === 'string')) throw unreadable(what(), 'its callers are not a list of names');
  const names = callers.map((n: string) => intern(n));
  const sets = names.map((n) => intentOf(c, n));
  const cols = decodeIntent(snap.data, names.length, what);
  for (let i = 0; i < cols.n; i++) {
    const id = cols.id[i]!;
    if (ended.has(id)) continue;
    sets[cols.caller[i]!]!.load(cols.first[i]!, cols.last[i]! + 1n, cols.mapPos[i]!, id);
  }
  for (const r of s.intentBornAfter.all(snap.max_id, c.id)) {
    intentOf(c, intern(r[1])).load(fromDb(r[2]), fromDb(r[3]) + 1n, Number(r[4]), Number(r[0]));
  }
  return true;
}

/** A caller's intent in a domain (an empty set made when it has none). */
export function intentOf(c: DomainState, caller: string): IntervalSet {
  let s = c.intent.get(caller);
  if (!s) {
    s = new IntervalSet();
    c.intent.set(caller, s);
  }
  return s;
}

/** How a StoredOrigin reads the region and caller of its stored map event, on the statements given. */
function originReader(s: LedgerStatements): (pos: number) => OriginFields {
  return (pos) => {
    const row = s.eventData.get(pos);
    const ev = row && decodeEventRow(row);
    if (ev?.type !== 'map')
      throw unreadable(
        'the live runs (run_log and run_snapshots)',
        `a live run names event #${pos} as its map, which is ${ev ? `a ${ev.type} event` : 'not stored'}`,
      );
    return {
      iova: ev.body.iova,
      paddr: ev.body.paddr,
      size: ev.body.size,
      by: askerOf(ev.who.caller ?? UNKNOWN_CALLER, ev.who.site ?? ''),
    };
  };
}

/** A stored event row checked (decodeStoredEvent) and typed (decodeBody), with who asked and its body as stored. */
export function decodeEventRow(ev: EventRow): StoredRead {
  const data = decodeStoredEvent(ev.type, ev.data, () => eventName(ev.position, ev.event_id));
  const d = decodeBody(ev.type as EventType, data.body) as StoredRead;
  d.who = data.who ?? {};
  d.stored = data.body;
  return d;
}

/** What a StoredOrigin reads of its map event: the region mapped and who mapped it. */
export interface OriginFields {
  iova: bigint;
  paddr: bigint;
  size: bigint;
  by: MapAsker;
}

/**
 * The map origin of a run loaded from the ledger: its position and prot are in the run log; its
 * region and caller are read from the map event on first use.
 */
export class StoredOrigin implements MapOrigin {
  private f: OriginFields | undefined;
  constructor(
    readonly ref: number,
    readonly prot: number,
    private readonly read: (pos: number) => OriginFields,
    /** The caller, when the run log said it (schema 7): the event is then read only for the rest. */
    private readonly knownCaller?: string,
  ) {}
  get caller(): string {
    return this.knownCaller ?? this.fields.by.caller;
  }
  private get fields(): OriginFields {
    return (this.f ??= this.read(this.ref));
  }
  get iova(): bigint {
    return this.fields.iova;
  }
  get paddr(): bigint {
    return this.fields.paddr;
  }
  get size(): bigint {
    return this.fields.size;
  }
  get by(): MapAsker {
    return this.fields.by;
  }
}

const interned = new Map<string, string>();
/**
 * One flat copy of each caller or site name. V8 makes a substring of 13 or more characters a
 * slice that keeps its parent string alive; a name parsed out of a 64 KiB read chunk and held by
 * a long-lived map would pin the chunk (an import kept ~50 MB of old chunks this way).
 */
export function intern(s: string): string {
  let v = interned.get(s);
  if (v === undefined) {
    if (interned.size > 100_000) interned.clear(); // names are few; this only bounds a pathological input
    v = JSON.parse(JSON.stringify(s)) as string;
    interned.set(v, v);
  }
  return v;
}

const askers = new Map<string, Map<string, MapAsker>>();
let askerCount = 0;
/**
 * One shared MapAsker per caller and site, with interned names: the origin of every live map
 * holds one (MapOrigin.by), and callers and sites are few.
 */
export function askerOf(caller: string, site: string): MapAsker {
  let bySite = askers.get(caller);
  if (bySite === undefined) {
    if (askerCount > 100_000) {
      askers.clear(); // as intern: bounds a pathological input only
      askerCount = 0;
    }
    askers.set(intern(caller), (bySite = new Map()));
  }
  let a = bySite.get(site);
  if (a === undefined) {
    a = { caller: intern(caller), site: intern(site) };
    bySite.set(a.site, a);
    askerCount++;
  }
  return a;
}

/** A domain's profile from its stored descriptor; one that does not describe a profile is named. */
function profileOfStream(name: string, desc: ProfileDescriptor): Profile {
  try {
    return profileFromDescriptor(desc);
  } catch (e) {
    throw unreadable(`the profile of domain ${name} (streams.profile)`, (e as Error).message);
  }
}
