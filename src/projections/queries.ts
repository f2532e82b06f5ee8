/**
 * Questions to a ledger: state as of any event, diffs, history, blame, explain, audits.
 * Read-only; answers come from the projection tables (no replay), except walk and hardware
 * statistics, which load the state at that point into the core.
 */
import type Database from 'better-sqlite3';
import { createRequire } from 'node:module';
import type { Kysely } from 'kysely';
import { Domain, type Run, type WalkStep, type HwStats } from '../core/domain.js';
import { LedgerFault } from '../core/errors.js';
import { profileFromDescriptor, repeatOf, type Profile, type ProfileDescriptor } from '../core/profile.js';
import type { StepReason } from '../core/stepping.js';
import { openDatabase } from '../events/db.js';
import { eventName, profileProblem, unfitEvent } from '../events/stored.js';
import { decodeBody, decodeEvent, type DecodedBody, type DecodedEvent, type EventType, type Who } from '../events/decode.js';
import { callerAnalysis, type CallerView } from './callers.js';
import { fromDb, toDb } from './codec.js';
import { pageSizeOf, runLogComplete, runsByRows, runsFromLog, shiftOf, type RunColumns } from './runlog.js';
import { CorruptProjectionError, projectionJson, unreadable } from './corrupt.js';
import type { Tables } from './tables.js';
import { getMeta } from './meta.js';
import { registeredCatchUp } from './catch-up.js';

/** A `runs` row as `SELECT *` reads it: `pageOf` checks each column it needs before it is trusted. */
type RunRow = Record<string, bigint | null>;

/** An `unmap_findings` row with its domain's name and its event's time, as the finding queries select it. */
type FindingRow = Omit<Tables['unmap_findings'], 'domain' | 'collateral_bytes' | 'left_bytes' | 'step' | 'step_why'> & {
  name: string;
  time: string | null;
  step: StepView['verdict'] | null;
  step_why: StepReason | null;
};

/** A `faults` row with its domain's name and its event's time. */
type FaultRow = Omit<Tables['faults'], 'domain'> & { name: string; time: string | null };

/** The largest position among some events (NULL when there are none). */
type MaxRow = { p: bigint | null };

/** An ISO 8601 date, or date and time, with an optional zone. */
const ISO_TIME = /^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d(:?\d\d)?)?)?$/;

export class QueryError extends LedgerFault {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'QueryError';
  }
}

export interface DomainInfo {
  id: number;
  name: string;
  profile: Profile;
  version: number;
  destroyed: boolean;
  maxSpan: bigint;
  /** The position of its domain-created event. */
  createdAt: number;
}

export type { Who };

export interface EventSummary {
  position: number;
  domain: string;
  type: string;
  time?: string;
  recordedAt: string;
  who: Who;
  from?: { source?: string; line?: number };
  body: Record<string, unknown>;
}

export interface PageView {
  iova: bigint;
  paddr: bigint;
  pageSize: bigint;
  count: bigint;
  prot: number;
  level: number;
  mappedBy: number;
  validFrom: number;
  validTo?: number;
  row: number;
}

/** A domain's state just after an event. */
export interface StateView {
  domain: DomainInfo;
  at: number;
  /** The live runs as columns, sorted by IOVA. */
  runs: RunColumns;
  /** The same runs as objects (made on first use). */
  readonly pages: PageView[];
}

export interface CollateralView {
  iova: bigint;
  size: bigint;
  mappedBy: number;
  mappedByCaller: string;
  owner: string[];
}

export interface FindingView {
  position: number;
  domain: string;
  caller: string;
  site: string;
  requested: { iova: bigint; size: bigint };
  unmappedSize: bigint;
  predicted: bigint;
  divergent: boolean;
  ok: boolean;
  errno?: string;
  collateral: CollateralView[];
  leftMapped: Array<{ iova: bigint; size: bigint }>;
  time?: string;
  /** Over-unmaps only (core/stepping.ts): did the caller step past the collateral, and why that verdict. */
  stepped?: boolean;
  step?: StepView;
}

/**
 * An over-unmap's verdict (core/stepping.ts): stepped, harmful, or pending (not decided yet,
 * counted as harmful); why; the event that settled it; the other callers it names (`other-owner`,
 * `reused`). `cli/render/verdicts.ts` words it.
 */
export interface StepView {
  verdict: 'stepped' | 'harmful' | 'pending';
  reason: StepReason | 'pending';
  at?: number;
  others?: string[];
}

export interface FaultView {
  position: number;
  domain: string;
  iova: bigint;
  device?: string;
  flags?: number;
  cause: string;
  causePosition?: number;
  detail: Record<string, unknown>;
  time?: string;
}

export type { CallerView } from './callers.js';

/**
 * One lifetime of the page holding an IOVA: from the event that made that page (a map, or an
 * unmap that split a larger page into smaller ones) to the event that removed or re-split it.
 * Events that only rewrote the run around it (an unmap of another page of the same run) leave the
 * page as it was and do not end its lifetime.
 */
export interface BlameLink {
  /**
   * The page itself (`count` 1), with `validFrom`/`validTo` the lifetime's bounds as of the blame's
   * point (no `validTo` while it lasts) and `row` the last run row that held it.
   */
  page: PageView;
  /** The run row that held the page at the end of this lifetime (or holds it now), as stored. */
  run: PageView;
  began: EventSummary;
  ended?: EventSummary;
}

export interface BlameView {
  domain: string;
  iova: bigint;
  at: number;
  /** The page covering iova at `at`, if mapped (the first link's page). */
  page?: PageView;
  /** The run row holding that page at `at`, as stored. */
  run?: PageView;
  /** Every lifetime of the page at this iova up to `at`, newest first, with the events that began and ended it. */
  chain: BlameLink[];
  /** The event that made the iova what it is at `at` (the map, or the unmap that removed it). */
  cause?: EventSummary;
}

/** What an unmap removed of the run that held an IOVA: the bytes around it, and where they pointed. */
export interface RemovedView {
  iova: bigint;
  size: bigint;
  paddr: bigint;
}

export interface IovaRange {
  iova: bigint;
  size: bigint;
}

/**
 * Which removal an over-unmap was: the legacy driver removed the whole page at the IOVA
 * (`driver-removed-page`) or several whole pages (`driver-removed-pages`); on a profile that is
 * not legacy, the unmap removed more than asked (the kernel's report cut part of a block).
 */
export type Removal = 'driver-removed-page' | 'driver-removed-pages' | 'unmap-removed-more';

/** What `explain` answers, by kind (the events are the ones its sentence names). */
export type ExplainAnswer =
  | {
      /** Mapped at the point: the page, and the map event that made it (`inferred`: a mapping from before the trace). */
      kind: 'mapped';
      page: PageView;
      map: EventSummary;
      inferred: boolean;
      /** The range that map event asked for. */
      mapRange?: IovaRange;
      /** The unmaps that asked to remove it and stopped before it or were refused (the last three). */
      leftBy: FindingView[];
    }
  | { kind: 'destroyed'; event: EventSummary }
  | {
      /** An unmap whose request held the IOVA removed it; `map` had mapped it. */
      kind: 'unmapped';
      event: EventSummary;
      request?: IovaRange;
      map: EventSummary;
      inferred: boolean;
    }
  | {
      /** An unmap removed it though its request did not hold the IOVA: an over-unmap. */
      kind: 'over-unmapped';
      event: EventSummary;
      request?: IovaRange;
      map: EventSummary;
      inferred: boolean;
      /** The run that held the IOVA, and the bytes of it around the IOVA that the unmap removed. */
      run: PageView;
      removed: RemovedView;
      removal: Removal;
      /** Who still meant the IOVA to be mapped (the finding's collateral owners). */
      owners: string[];
      /** The finding of that unmap, with its stepped/harmful verdict. */
      finding?: FindingView;
    }
  | { kind: 'never-mapped' };

/**
 * A fault at the page, placed relative to the event the answer names: after it, before it, or
 * (never mapped) merely recorded; `apartMicros` when both carry trace seconds.
 */
export interface ExplainFault {
  fault: FaultView;
  relation: 'followed' | 'came-before' | 'recorded';
  apartMicros?: number;
}

/** `explain`'s answer: the IOVA, the point, the answer by kind, the faults it names, and the data behind it. */
export type Explanation = { domain: string; iova: bigint; asOf: number } & ExplainAnswer & {
    /** The last three faults at the page. */
    faultNotes: ExplainFault[];
    blame: BlameView;
    /** Findings whose request or collateral holds the IOVA, and faults at its page. */
    findings: FindingView[];
    faults: FaultView[];
  };

let builderModule: typeof import('kysely') | undefined;

/**
 * Loads the query builder ahead of its first use. The CLI does, for the commands that need it:
 * bundled, the import is one pre-linked chunk, where a synchronous require resolves and compiles
 * Kysely's ~100 CommonJS files (~120 ms on this project's 2-core machine).
 */
export async function loadQueryBuilder(): Promise<void> {
  builderModule ??= await import('kysely');
}

/**
 * Where the projection tables stand when they are behind the log (a ledger deferred them and
 * stopped before writing them: ledger.ts `deferProjections`), else undefined. A file without a
 * checkpoint row, or without the table, is taken as projected to its head (as every ledger was
 * before projections could be deferred).
 */
function projectionsBehind(db: Database.Database): { at: number; head: number } | undefined {
  let r: { at: bigint | null; head: bigint | null } | undefined;
  try {
    r = db
      .prepare<[], { at: bigint | null; head: bigint | null }>(
        "SELECT (SELECT position FROM checkpoints WHERE projection = 'inline') AS at, (SELECT max(position) FROM events) AS head",
      )
      .get();
  } catch {
    return undefined; // a damaged file: the queries name what is missing
  }
  if (!r || r.at === null || r.head === null || r.at >= r.head) return undefined;
  return { at: Number(r.at), head: Number(r.head) };
}

/**
 * Queries wait for the projections to reach the head (those opened read-only refuse instead): the
 * events after the checkpoint are folded and their projections written (`Ledger.projectNow`, the
 * catch-up ledger.ts registers) before the first query. A file that cannot be written to is
 * refused with the positions, rather than answered from tables behind the log.
 */
function catchUpProjections(path: string, behind: { at: number; head: number }): void {
  const catchUp = registeredCatchUp();
  if (catchUp === undefined) throw new ProjectionsBehindError(path, behind);
  try {
    catchUp(path);
  } catch (e) {
    // Only a file that cannot be written is named here; any other failure (busy, full disk, damage) as it is.
    if (!isReadOnly(e)) throw e;
    throw new QueryError(
      `${path}: ${behindText(behind)}; bringing them up to date failed: ${(e as Error).message}. Run 'iommu-ledger rebuild' where the file can be written.`,
    );
  }
}

/**
 * The projections are behind the log and the write path, which brings them up to date, is not
 * loaded (catch-up.ts): import `projections/ledger.js` and open the queries again.
 */
export class ProjectionsBehindError extends QueryError {
  constructor(
    readonly path: string,
    readonly behind: { at: number; head: number },
  ) {
    super(`${path}: ${behindText(behind)}; load the write path (projections/ledger.js) to bring them up to date, then open the queries again`);
    this.name = 'ProjectionsBehindError';
  }
}

const behindText = (b: { at: number; head: number }): string =>
  `the projections are at event #${b.at} and the log goes to #${b.head} (a writer deferred them and stopped before writing them)`;

const isReadOnly = (e: unknown): boolean => /readonly|read-only|EACCES|EROFS/i.test(`${(e as { code?: string }).code ?? ''} ${(e as Error).message}`);

export class Queries {
  readonly db: Database.Database;
  private kysely?: Kysely<Tables>;
  private domainCache = new Map<string, DomainInfo>();
  private cachedAt: bigint | number | undefined;

  constructor(path: string, opts: { readonly?: boolean } = {}) {
    this.db = openDatabase(path, { mustExist: true, ...(opts.readonly ? { readonly: true } : {}) });
    this.db.defaultSafeIntegers(true);
    const behind = projectionsBehind(this.db);
    if (behind) {
      this.db.close();
      if (opts.readonly) {
        throw new QueryError(
          `${path}: ${behindText(behind)}; this command reads the ledger without writing to it: bring them up to date first ('iommu-ledger rebuild', or any query command such as 'iommu-ledger audit')`,
        );
      }
      catchUpProjections(path, behind);
      this.db = openDatabase(path, { mustExist: true, ...(opts.readonly ? { readonly: true } : {}) });
      this.db.defaultSafeIntegers(true);
    }
  }

  /**
   * The typed query builder for the audit listings, loaded on first use: Kysely takes longer to
   * load than most queries take to run, and most commands never need it.
   */
  get k(): Kysely<Tables> {
    if (!this.kysely) {
      builderModule ??= createRequire(import.meta.url)('kysely') as typeof import('kysely');
      const { Kysely: K, SqliteDialect } = builderModule;
      this.kysely = new K<Tables>({ dialect: new SqliteDialect({ database: this.db }) });
    }
    return this.kysely;
  }

  close(): void {
    this.db.close();
  }

  private readonly prepared = new Map<string, Database.Statement<unknown[]>>();
  /**
   * A prepared statement, kept per SQL text: preparing costs more than running a point query,
   * and some commands ask one per row they print (`state` names the caller of each map event).
   * Typed with what it binds (`P`: a tuple, or an object of named parameters) and the row it
   * returns (`R`, after its `pluck`/`raw`/`safeIntegers` settings; integers are bigints unless
   * the statement turns safe integers off), as the write path's statements are (statements.ts).
   */
  private prep<P extends unknown[] | object = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    let st = this.prepared.get(sql);
    if (!st) {
      if (this.prepared.size > 200) this.prepared.clear();
      st = this.db.prepare(sql);
      this.prepared.set(sql, st);
    }
    // One SQL text is always prepared with the same types (the text names its parameters and columns).
    return st as unknown as Database.Statement<P, R>;
  }

  get lastPosition(): number {
    // An aggregate without GROUP BY returns one row, always.
    const r = this.prep<[], MaxRow>('SELECT max(position) AS p FROM events').get()!;
    return Number(r.p ?? 0n);
  }

  domains(): DomainInfo[] {
    // Each domain's profile as its hashed domain-created event says (streams.profile is a copy),
    // read through the schema of stored events: a tampered one is named, not half-read.
    // Two statements: SQLite cannot flatten the view on the right of a LEFT JOIN, and would build
    // all of stored_events to join it (~0.4 s at 10^6 events).
    const rows = this.prep<[], Tables['streams'] & { created_pos: bigint | null }>(
      `SELECT s.id, s.name, s.version, s.profile, s.created_at, s.destroyed_at, s.max_span, e.position AS created_pos
           FROM streams s LEFT JOIN events e ON e.stream = s.id AND e.version = 1 ORDER BY s.id`,
    ).all();
    const created = this.prep<[position: bigint], { event_id: string; type: string; data: string }>(
      'SELECT event_id, type, data FROM stored_events WHERE position = ?',
    );
    return rows.map((row) => {
      const r = { ...row, ...(row.created_pos === null ? { event_id: null, type: null, data: null } : created.get(row.created_pos)!) };
      if (r.created_pos === null)
        return this.info(
          r,
          projectionJson<ProfileDescriptor>(() => `the profile of domain ${r.name} (streams.profile)`, r.profile),
        );
      const what = eventName(Number(r.created_pos), r.event_id!);
      if (r.type !== 'domain-created') throw unfitEvent(what, `the first event of domain ${r.name} is a ${JSON.stringify(r.type)} event, not domain-created`);
      const ev = decodeEvent({ position: Number(r.created_pos), stream: r.name, version: 1, type: r.type, id: r.event_id!, data: r.data! });
      return this.info(r, (ev as DecodedEvent & { type: 'domain-created' }).body.profile);
    });
  }

  private info(r: Tables['streams'], desc: ProfileDescriptor): DomainInfo {
    const bad = profileProblem(desc);
    if (bad !== undefined) throw unreadable(`the profile of domain ${r.name} (streams.profile)`, bad.replace(/^body\.profile: /, ''));
    return {
      id: Number(r.id),
      name: r.name,
      profile: profileFromDescriptor(desc),
      version: Number(r.version),
      destroyed: r.destroyed_at !== null,
      maxSpan: fromDb(r.max_span),
      createdAt: Number(r.created_at),
    };
  }

  /** A domain by name; with no name, the only one (an error says which exist when there are several). */
  domain(name?: string): DomainInfo {
    // A domain's version, max_span and destroyed change as others append: the cache holds only
    // while no other connection has committed (data_version moves when one has).
    const v = this.db.pragma('data_version', { simple: true }) as bigint | number;
    if (v !== this.cachedAt) {
      this.domainCache.clear();
      this.cachedAt = v;
    }
    const key = name ?? '';
    const hit = this.domainCache.get(key);
    if (hit) return hit;
    const all = this.domains();
    let d: DomainInfo | undefined;
    if (name === undefined) {
      if (all.length === 0) throw new QueryError('the ledger holds no domain yet');
      if (all.length > 1) throw new QueryError(`the ledger holds ${all.length} domains (${all.map((x) => x.name).join(', ')}): choose one with --domain NAME`);
      d = all[0];
    } else {
      d = all.find((x) => x.name === name);
      if (!d) throw new QueryError(`no domain ${JSON.stringify(name)}; the ledger holds: ${all.map((x) => x.name).join(', ') || 'none'}`);
    }
    this.domainCache.set(key, d!);
    return d!;
  }

  /**
   * A point in time: a position ("1234", "#1234"), a trace timestamp in seconds ("511.102331"), an
   * ISO date-time (compared with source times, else recording times), or nothing for "now".
   * Timestamps are looked up among the events of `domain` when one is given.
   */
  resolveAt(at?: string | number, domain?: DomainInfo, what = '--at'): number {
    const last = this.lastPosition;
    if (at === undefined || at === 'now' || at === 'latest') return last;
    if (typeof at === 'number') {
      if (!Number.isInteger(at) || at < 0) throw new QueryError(`${what} ${at}: a position is a whole number, 0 or more`);
      if (at > last) throw new QueryError(`${what} ${at}: the ledger ends at position ${last}`);
      return at;
    }
    const t = at.trim();
    if (/^#?\d+$/.test(t)) {
      const p = Number(t.replace('#', ''));
      if (p > last) throw new QueryError(`${what} ${t}: the ledger ends at position ${last}`);
      return p;
    }
    const scope = domain ? ' AND stream = @d' : '';
    const params: { d?: number } = domain ? { d: domain.id } : {};
    if (/^\d+\.\d+$/.test(t)) {
      // Trace seconds since boot: only times that are plain numbers take part.
      const r = this.prep<{ t: string; d?: number }, MaxRow>(
        `SELECT max(position) AS p FROM events WHERE time NOT GLOB '*[^0-9.]*' AND time GLOB '*.*' AND CAST(time AS REAL) <= CAST(@t AS REAL)${scope}`,
      ).get({ ...params, t })!;
      if (r.p !== null) return Number(r.p);
      // Nothing of this domain by then (it was opened later, or its first events have no time):
      // the ledger as it was at that time, or before its first event, where the domain is empty.
      if (domain) {
        const any = this.prep<{ t: string }, MaxRow>(
          `SELECT max(position) AS p FROM events WHERE time NOT GLOB '*[^0-9.]*' AND time GLOB '*.*' AND CAST(time AS REAL) <= CAST(@t AS REAL)`,
        ).get({ t })!;
        if (any.p !== null) return Number(any.p);
        if (this.prep(`SELECT 1 FROM events WHERE time NOT GLOB '*[^0-9.]*' AND time GLOB '*.*' LIMIT 1`).get()) return Math.max(0, domain.createdAt - 1);
      }
      throw new QueryError(`${what} ${t}: no event${domain ? ` of ${domain.name}` : ''} has a trace timestamp at or before ${t} s`);
    }
    // An ISO 8601 date or time (Date.parse alone also takes "-1" or "1.2.3" as dates); a time
    // without a zone is UTC, as stored times are read.
    const ms = ISO_TIME.test(t) ? Date.parse(/[T ]\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(t) ? `${t}Z` : t) : NaN;
    if (Number.isNaN(ms))
      throw new QueryError(`${what} ${JSON.stringify(at)}: give a position (1234), trace seconds (511.10) or an ISO time (2026-11-23T10:00:00Z)`);
    const iso = new Date(ms).toISOString();
    // Compared as instants (julianday), not as text: "10:00:05Z" and "10:00:05.000+00:00" are equal.
    const bySource = this.prep<{ iso: string; d?: number }, MaxRow>(
      `SELECT max(position) AS p FROM events WHERE time LIKE '____-__-__T%' AND julianday(time) <= julianday(@iso)${scope}`,
    ).get({ ...params, iso })!;
    if (bySource.p !== null) return Number(bySource.p);
    const byRecord = this.prep<{ iso: string; d?: number }, MaxRow>(
      `SELECT max(position) AS p FROM events WHERE julianday(recorded_at) <= julianday(@iso)${scope}`,
    ).get({ ...params, iso })!;
    if (byRecord.p === null) throw new QueryError(`${what} ${t}: no event at or before that time`);
    return Number(byRecord.p);
  }

  private pageOf(r: RunRow): PageView {
    // A row of the runs table, checked before it is trusted (a column missing, or not an integer).
    for (const k of RUN_COLUMNS) {
      if (typeof r[k] !== 'bigint')
        throw unreadable(
          `a row of the runs table (id ${String(r.id)})`,
          `${k} is ${r[k] === undefined ? 'missing' : r[k] === null ? 'NULL' : `a ${typeof r[k]}`}`,
        );
    }
    const v: PageView = {
      iova: fromDb(r.iova!),
      paddr: fromDb(r.paddr!),
      pageSize: fromDb(r.page_size!),
      count: r.count!,
      prot: Number(r.prot),
      level: Number(r.level),
      mappedBy: Number(r.map_pos),
      validFrom: Number(r.valid_from),
      row: Number(r.id),
    };
    if (r.valid_to !== null && r.valid_to !== undefined) v.validTo = Number(r.valid_to);
    return v;
  }

  /**
   * The pages mapped in a domain just after event `at`. `runs` holds them as columns sorted by
   * IOVA (decoded from the run log, schema 5); `pages` makes one object per run on first use,
   * which costs more than the look-up itself on a state of tens of thousands of runs.
   * Their `validTo` is not set: a state knows its pages' past, not their future (`blame` does).
   */
  stateAt(domainName?: string, at?: string | number, what = '--at'): StateView {
    const d = this.domain(domainName);
    const p = this.resolveAt(at, d, what);
    const runs = this.runsAt(d, p);
    let pages: PageView[] | undefined;
    return {
      domain: d,
      at: p,
      runs,
      get pages() {
        return (pages ??= pagesOf(runs));
      },
    };
  }

  /** The live runs just after event p (the run log; the runs table while the log is not filled in). */
  private runsAt(d: DomainInfo, p: number): RunColumns {
    return runLogComplete(this.db) ? runsFromLog(this.db, d.id, p) : runsByRows(this.db, d.id, p);
  }

  /**
   * The core's domain as it was after event `at`, for walks and hardware statistics. Its runs'
   * origins carry the map event's position only (region bounds are not needed for either, and
   * reading every map event would cost a query per live mapping).
   */
  coreAt(domainName?: string, at?: string | number): { domain: DomainInfo; at: number; core: Domain } {
    const s = this.stateAt(domainName, at);
    try {
      return { domain: s.domain, at: s.at, core: coreOfRuns(s.domain, s.runs) };
    } catch (e) {
      if (e instanceof CorruptProjectionError) throw e;
      // Runs that the core cannot hold (a level or page size the format has not, overlaps).
      throw unreadable(`the live runs of domain ${s.domain.name} at event #${s.at} (run_log and run_snapshots)`, (e as Error).message);
    }
  }

  walk(domainName: string | undefined, iova: bigint, at?: string | number): { domain: DomainInfo; at: number; steps: WalkStep[]; outside?: true } {
    const d = this.domain(domainName);
    const p = this.resolveAt(at, d);
    // Beyond the domain's input address space no walk happens (the page tables do not index it).
    if (iova >= 1n << BigInt(d.profile.iovaBits)) return { domain: d, at: p, steps: [], outside: true };
    // The walk's entries below the root depend only on what is mapped in the span of its
    // level-1 entry; the root entry is valid if anything is mapped in its own span (one witness
    // run is enough). So only those runs are loaded, not the whole state.
    const lv = d.profile.format.levels;
    const span = (i: number): [bigint, bigint] => {
      const sh = BigInt(lv[i]!.shift);
      const s = (iova >> sh) << sh;
      return [s, s + (1n << sh)];
    };
    const [s1, e1] = span(Math.min(1, lv.length - 1));
    const lowest1 = s1 >= d.maxSpan ? s1 - d.maxSpan : 0n;
    const pages = this.prep<[domain: number, lowest: bigint, highest: bigint, reaching: bigint, from: number, to: number], RunRow>(
      'SELECT * FROM runs WHERE domain = ? AND iova >= ? AND iova <= ? AND iova_last >= ? AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)',
    )
      .all(d.id, toDb(lowest1), toDb(e1 - 1n), toDb(s1), p, p)
      .map((r) => this.pageOf(r));
    if (!pages.length && lv.length > 1) {
      const [s0, e0] = span(0);
      const lowest = s0 >= d.maxSpan ? s0 - d.maxSpan : 0n;
      const w = this.prep<[domain: number, lowest: bigint, highest: bigint, reaching: bigint, from: number, to: number], RunRow>(
        'SELECT * FROM runs WHERE domain = ? AND iova >= ? AND iova <= ? AND iova_last >= ? AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?) LIMIT 1',
      ).get(d.id, toDb(lowest), toDb(e0 - 1n), toDb(s0), p, p);
      if (w) pages.push(this.pageOf(w));
    }
    return { domain: d, at: p, steps: coreOf(d, pages).walk(iova) };
  }

  hardware(
    domainName?: string,
    at?: string | number,
  ): { domain: DomainInfo; at: number; stats: HwStats; invalidations?: { count: number; bytes: bigint; asOf: number } } {
    const c = this.coreAt(domainName, at);
    const cp = this.prep<[domain: number, at: number], { position: bigint; stats: string }>(
      'SELECT position, stats FROM hw_state WHERE domain = ? AND position <= ? ORDER BY position DESC LIMIT 1',
    ).get(c.domain.id, c.at);
    const out: { domain: DomainInfo; at: number; stats: HwStats; invalidations?: { count: number; bytes: bigint; asOf: number } } = {
      domain: c.domain,
      at: c.at,
      stats: c.core.stats(),
    };
    if (cp) {
      // A hardware checkpoint (hw_state.stats, JSON), checked before it is trusted.
      const what = () => `the hardware checkpoint of domain ${c.domain.name} at event #${cp.position} (hw_state)`;
      const st = projectionJson<{ invalidations?: unknown; invalidatedBytes?: unknown }>(what, cp.stats);
      if (typeof st !== 'object' || st === null) throw unreadable(what(), 'not a JSON object');
      if (typeof st.invalidations !== 'number' || !Number.isSafeInteger(st.invalidations) || st.invalidations < 0)
        throw unreadable(what(), `invalidations ${JSON.stringify(st.invalidations) ?? 'missing'} is not a count`);
      if (typeof st.invalidatedBytes !== 'string' || !/^0x[0-9a-f]{1,16}$/.test(st.invalidatedBytes))
        throw unreadable(what(), `invalidatedBytes ${JSON.stringify(st.invalidatedBytes) ?? 'missing'} is not a "0x" size`);
      out.invalidations = { count: st.invalidations, bytes: BigInt(st.invalidatedBytes), asOf: Number(cp.position) };
    }
    return out;
  }

  /** Pages added and removed between two points. */
  diff(
    domainName: string | undefined,
    from: string | number,
    to?: string | number,
  ): { domain: DomainInfo; from: number; to: number; added: PageView[]; removed: PageView[] } {
    const a = this.stateAt(domainName, from, 'diff from');
    const b = this.stateAt(domainName, to, 'diff to');
    if (a.at > b.at) throw new QueryError(`diff: the first point (event #${a.at}) is after the second (event #${b.at}): give the earlier one first`);
    const ra = new Set(a.runs.id);
    const rb = new Set(b.runs.id);
    const removed = a.pages.filter((p) => !rb.has(p.row));
    // When each removed page ended (in (from, to] when from < to), from its row.
    const end = this.prep<[id: number], bigint | null>('SELECT valid_to FROM runs WHERE id = ?').pluck();
    for (const pg of removed) {
      const t = end.get(pg.row);
      if (t !== null && t !== undefined) pg.validTo = Number(t);
    }
    return {
      domain: a.domain,
      from: a.at,
      to: b.at,
      added: b.pages.filter((p) => !ra.has(p.row)),
      removed,
    };
  }

  /**
   * The caller of each event at `positions` ('(unknown)' when it names none): one statement per
   * 4,096 positions, read in SQLite, instead of a parsed event each (`state` names the caller of
   * every run it prints: 25,000 runs took ~250 ms one event at a time).
   */
  callersOf(positions: Iterable<number>): Map<number, string> {
    const all = [...new Set(positions)].sort((a, b) => a - b);
    // SQLite reads the caller; an event whose text SQLite cannot read as JSON, or whose caller is
    // not a text, is read in JavaScript, which names what does not fit.
    const st = this.prep<[positions: string], [position: number, caller: unknown, valid: number]>(
      `SELECT e.position, CASE WHEN json_valid(e.data) THEN json_extract(e.data, '$.who.caller') END, json_valid(e.data) FROM events e WHERE e.position IN (SELECT value FROM json_each(?))`,
    )
      .raw(true)
      .safeIntegers(false);
    const out = new Map<number, string>();
    for (let i = 0; i < all.length; i += 4096) {
      for (const [pos, caller, valid] of st.all(JSON.stringify(all.slice(i, i + 4096)))) {
        if (!valid || (caller !== null && typeof caller !== 'string')) this.event(pos);
        out.set(pos, typeof caller === 'string' ? caller : '(unknown)');
      }
    }
    return out;
  }

  /**
   * The caller of each run's map event, by the map event's position: from the run log's caller
   * column (schema 7), and from the events for runs whose blobs predate it (`callersOf`).
   */
  callersOfRuns(runs: RunColumns): Map<number, string> {
    const out = new Map<number, string>();
    const missing: number[] = [];
    for (let i = 0; i < runs.n; i++) {
      const k = runs.caller[i]!;
      if (k) out.set(runs.mapPos[i]!, runs.names[k - 1]!);
      else missing.push(runs.mapPos[i]!);
    }
    if (missing.length) for (const [p, c] of this.callersOf(missing)) out.set(p, c);
    for (let i = 0; i < runs.n; i++) {
      if (!out.has(runs.mapPos[i]!))
        throw unreadable(
          'the live runs (run_log and run_snapshots)',
          `a run at 0x${runs.iova[i]!.toString(16)} names event #${runs.mapPos[i]} as its map, which is not stored`,
        );
    }
    return out;
  }

  event(position: number): EventSummary {
    const r = this.prep<
      [position: number],
      { position: bigint; event_id: string; name: string; version: bigint; type: string; time: string | null; recorded_at: string; data: string }
    >(
      'SELECT e.position, e.event_id, e.stream_name AS name, e.version, e.type, e.time, e.recorded_at, e.data FROM stored_events e WHERE e.position = ? AND e.stream_name IS NOT NULL',
    ).get(position);
    if (!r) throw new QueryError(`no event at position ${position}`);
    const ev = decodeEvent({ position, stream: r.name, version: Number(r.version), type: r.type, id: r.event_id, data: r.data });
    const e: EventSummary = { position: Number(r.position), domain: r.name, type: r.type, recordedAt: r.recorded_at, who: ev.who, body: ev.stored };
    if (r.time) e.time = r.time;
    if (ev.from) e.from = ev.from;
    return e;
  }

  /** Every lifetime of a page overlapping [start, end) up to `at`, oldest first. */
  private lifetimes(d: DomainInfo, start: bigint, end: bigint, at: number): PageView[] {
    const lowest = start >= d.maxSpan ? start - d.maxSpan : 0n;
    const rows = this.prep<[domain: number, lowest: bigint, highest: bigint, reaching: bigint, at: number], RunRow>(
      'SELECT * FROM runs WHERE domain = ? AND iova >= ? AND iova <= ? AND iova_last >= ? AND valid_from <= ? ORDER BY valid_from, iova',
    ).all(d.id, toDb(lowest), toDb(end - 1n), toDb(start), at);
    return rows.map((r) => this.pageOf(r));
  }

  /**
   * Every event that touched [start, end), in order: maps that added pages there, unmaps that
   * removed or re-split pages there, the destruction of the domain, unmaps with findings whose
   * request or collateral reaches the range, and faults in the range. An event that only rewrote a
   * run around the range (its pages in the range stay, with the same address, physical address
   * and size) did not touch it.
   */
  history(domainName: string | undefined, start: bigint, end: bigint, at?: string | number): { domain: DomainInfo; at: number; events: EventSummary[] } {
    // Nothing lies past the 64-bit space: a range reaching beyond it ends there.
    if (end > 1n << 64n) end = 1n << 64n;
    const d = this.domain(domainName);
    const p = this.resolveAt(at, d);
    if (end <= start) return { domain: d, at: p, events: [] };
    const positions = new Set<number>();
    // The rows each event began and ended in the range; an event changed the range when the
    // pages it ended there differ from those it began there.
    const born = new Map<number, PageView[]>();
    const ended = new Map<number, PageView[]>();
    const add = (m: Map<number, PageView[]>, e: number, pg: PageView) => {
      const l = m.get(e);
      if (l) l.push(pg);
      else m.set(e, [pg]);
    };
    for (const pg of this.lifetimes(d, start, end, p)) {
      positions.add(pg.mappedBy);
      add(born, pg.validFrom, pg);
      if (pg.validTo !== undefined && pg.validTo <= p) add(ended, pg.validTo, pg);
    }
    for (const [e, rows] of born) if (!samePagesIn(ended.get(e) ?? [], rows, start, end)) positions.add(e);
    for (const e of ended.keys()) if (!born.has(e)) positions.add(e);
    for (const f of this.faultsIn(d, start, end, p)) positions.add(f.position);
    // Unmaps whose request reaches the range, even where nothing was mapped (they left it as it was).
    for (const f of this.findingsTouching(d, start, end, p)) {
      const reqEnd = f.requested.iova + f.requested.size;
      if (f.requested.iova < end && reqEnd > start) positions.add(f.position);
      else if (f.collateral.some((c) => c.iova < end && c.iova + c.size > start)) positions.add(f.position);
    }
    return { domain: d, at: p, events: [...positions].sort((a, b) => a - b).map((x) => this.event(x)) };
  }

  /**
   * Which event made the page at iova what it is at `at`, and the lifetimes of the page there
   * before it. Run rows that follow each other with the same page at iova (an unmap elsewhere in
   * the run rewrote it) are one lifetime.
   */
  blame(domainName: string | undefined, iova: bigint, at?: string | number): BlameView {
    const d = this.domain(domainName);
    const p = this.resolveAt(at, d);
    const view: BlameView = { domain: d.name, iova, at: p, chain: [] };
    const lives: Array<{ first: PageView; last: PageView; page: PageView }> = [];
    for (const row of this.lifetimes(d, iova, iova + 1n, p)) {
      const page = pageAt(row, iova);
      const cur = lives[lives.length - 1];
      if (cur && cur.last.validTo === row.validFrom && samePage(cur.page, page)) cur.last = row;
      else lives.push({ first: row, last: row, page });
    }
    for (const { first, last, page } of lives.reverse()) {
      page.validFrom = first.validFrom;
      page.row = last.row;
      const link: BlameLink = { page, run: last, began: this.event(first.validFrom) };
      // The lifetime's end as of p (a later end of the last row need not end the page).
      if (last.validTo !== undefined && last.validTo <= p) {
        page.validTo = last.validTo;
        link.ended = this.event(last.validTo);
      }
      view.chain.push(link);
    }
    const top = view.chain[0];
    if (top && !top.ended) {
      view.page = top.page;
      view.run = top.run;
      view.cause = top.page.mappedBy === top.began.position ? top.began : this.event(top.page.mappedBy);
    } else if (top?.ended) {
      view.cause = top.ended;
    }
    return view;
  }

  /**
   * The bytes of `run` around iova that the event ending it removed: the run less the runs that
   * event began inside it (the pages it kept, and those it mapped again in smaller pages).
   */
  private removedAround(d: DomainInfo, run: PageView, iova: bigint): RemovedView {
    const runEnd = run.iova + run.pageSize * run.count;
    let s = run.iova;
    let e = runEnd;
    if (run.validTo !== undefined) {
      const rows = this.prep<[domain: number, lowest: bigint, highest: bigint, from: number], { iova: bigint; iova_last: bigint }>(
        'SELECT iova, iova_last FROM runs WHERE domain = ? AND iova >= ? AND iova <= ? AND valid_from = ?',
      ).all(d.id, toDb(run.iova), toDb(runEnd - 1n), run.validTo);
      for (const r of rows) {
        const rs = fromDb(r.iova);
        const re = fromDb(r.iova_last) + 1n;
        if (re <= iova && re > s) s = re;
        if (rs > iova && rs < e) e = rs;
      }
    }
    return { iova: s, size: e - s, paddr: run.paddr + (s - run.iova) };
  }

  /**
   * When, by whom and why this iova is mapped or not at `at`, as data (`cli/render/explain.ts`
   * words it): what the page is or what removed it, the events and findings behind that, and the
   * faults at the page placed relative to the event named.
   */
  explain(domainName: string | undefined, iova: bigint, at?: string | number): Explanation {
    const b = this.blame(domainName, iova, at);
    const d = this.domain(domainName);
    const findings = this.findingsTouching(d, iova, iova + 1n, b.at).filter((f) => {
      const inReq = iova >= f.requested.iova && iova < f.requested.iova + f.requested.size;
      return inReq || f.collateral.some((c) => iova >= c.iova && iova < c.iova + c.size);
    });
    const pg = b.chain[0]?.page;
    const faults = this.faultsIn(d, pg ? pg.iova : iova, pg ? pg.iova + pg.pageSize * pg.count : iova + 1n, b.at).filter(
      (f) => f.iova === iova || inLastPage(f.iova, b),
    );
    let answer: ExplainAnswer;
    if (b.page && b.cause) {
      const m = b.cause;
      const range = rangeOf(m);
      // The unmaps that asked to remove it and stopped before it (the last three).
      const leftBy = findings.filter((f) => f.leftMapped.some((l) => iova >= l.iova && iova < l.iova + l.size)).slice(-3);
      answer = { kind: 'mapped', page: b.page, map: m, inferred: isInferred(m), ...(range ? { mapRange: range } : {}), leftBy };
    } else if (b.cause) {
      const u = b.cause;
      const last = b.chain[0]!;
      const req = rangeOf(u);
      const inside = req && u.type === 'unmap' ? iova >= req.iova && iova < req.iova + req.size : false;
      const mapEv = this.event(last.page.mappedBy);
      const request = req ? { request: req } : {};
      if (u.type === 'domain-destroyed') {
        answer = { kind: 'destroyed', event: u };
      } else if (inside) {
        answer = { kind: 'unmapped', event: u, ...request, map: mapEv, inferred: isInferred(mapEv) };
      } else {
        const f = findings.find((x) => x.position === u.position);
        const owners = f?.collateral.find((c) => iova >= c.iova && iova < c.iova + c.size)?.owner ?? [];
        // What the unmap removed of the run that held iova (not the whole run: it may have kept the rest).
        const removed = this.removedAround(d, last.run, iova);
        const whole = removed.iova % last.run.pageSize === 0n && removed.size % last.run.pageSize === 0n;
        const removal: Removal =
          d.profile.semantics !== 'legacy' ? 'unmap-removed-more' : whole && removed.size > last.run.pageSize ? 'driver-removed-pages' : 'driver-removed-page';
        answer = {
          kind: 'over-unmapped',
          event: u,
          ...request,
          map: mapEv,
          inferred: isInferred(mapEv),
          run: last.run,
          removed,
          removal,
          owners,
          ...(f ? { finding: f } : {}),
        };
      }
    } else {
      answer = { kind: 'never-mapped' };
    }
    // Faults are placed relative to the event the answer names (none: never mapped).
    const ref = b.cause;
    const faultNotes = faults.slice(-3).map((f): ExplainFault => {
      if (ref === undefined) return { fault: f, relation: 'recorded' };
      const apart = ref.time && f.time ? microsApart(ref.time, f.time) : undefined;
      return { fault: f, relation: f.position > ref.position ? 'followed' : 'came-before', ...(apart !== undefined ? { apartMicros: apart } : {}) };
    });
    return { domain: d.name, iova, asOf: b.at, ...answer, faultNotes, blame: b, findings, faults };
  }

  /** Findings whose request or collateral touches [start, end) (bounds kept in columns: no JSON scan). */
  private findingsTouching(d: DomainInfo, start: bigint, end: bigint, upTo: number): FindingView[] {
    const rows = this.prep<[domain: number, upTo: number, highest: bigint, lowest: bigint], FindingRow>(
      `SELECT f.position, s.name, f.caller, f.site, f.iova, f.size, f.unmapped, f.predicted, f.divergent, f.detail, e.time, f.step, f.step_why, f.step_pos, f.step_others
           FROM unmap_findings f INDEXED BY unmap_findings_reach JOIN streams s ON s.id = f.domain JOIN events e ON e.position = f.position
          WHERE f.domain = ? AND f.position <= ? AND f.reach_first <= ? AND f.reach_last >= ? ORDER BY f.position`,
    ).all(d.id, upTo, toDb(end - 1n), toDb(start));
    return rows.map((r) => this.findingOf(r));
  }

  /** A finding row as a view; a row whose JSON does not have the finding's shape is named (a projection: `rebuild` recomputes it). */
  private findingOf(r: FindingRow): FindingView {
    try {
      return this.findingOfRow(r);
    } catch (e) {
      if (e instanceof CorruptProjectionError || !(e instanceof TypeError || e instanceof SyntaxError || e instanceof RangeError)) throw e;
      throw unreadable(`the finding at event #${r.position} (unmap_findings)`, e.message);
    }
  }

  private findingOfRow(r: FindingRow): FindingView {
    const detail = projectionJson<unknown>(() => `the finding at event #${r.position} (unmap_findings.detail)`, r.detail) as {
      ok: boolean;
      errno?: string;
      collateral: Array<{ iova: string; size: string; mappedBy: number; mappedByCaller: string; owner: string[] }>;
      leftMapped: Array<{ iova: string; size: string }>;
    };
    const f: FindingView = {
      position: Number(r.position),
      domain: r.name,
      caller: r.caller ?? '(unknown)',
      site: r.site ?? '',
      requested: { iova: fromDb(r.iova), size: fromDb(r.size) },
      unmappedSize: fromDb(r.unmapped),
      predicted: fromDb(r.predicted),
      divergent: r.divergent === 1n,
      ok: detail.ok,
      collateral: detail.collateral.map((c) => ({
        iova: BigInt(c.iova),
        size: BigInt(c.size),
        mappedBy: c.mappedBy,
        mappedByCaller: c.mappedByCaller,
        owner: c.owner,
      })),
      leftMapped: detail.leftMapped.map((l) => ({ iova: BigInt(l.iova), size: BigInt(l.size) })),
    };
    if (detail.errno) f.errno = detail.errno;
    if (r.time) f.time = r.time;
    if (r.step !== null && r.step !== undefined) {
      const verdict = r.step;
      const reason = r.step_why ?? 'pending';
      const at = r.step_pos !== null && r.step_pos !== undefined ? Number(r.step_pos) : undefined;
      const others = r.step_others
        ? projectionJson<string[]>(() => `the finding at event #${r.position} (unmap_findings.step_others)`, r.step_others)
        : undefined;
      f.stepped = verdict === 'stepped';
      f.step = { verdict, reason, ...(at !== undefined ? { at } : {}), ...(others ? { others } : {}) };
    }
    return f;
  }

  /**
   * Findings of a kind. Over-unmaps: `stepped` false keeps the harmful (and undecided) ones only,
   * true the stepped ones only; unset, all.
   */
  findings(
    filter: { domain?: string; caller?: string; upTo?: number; kind?: 'over-unmap' | 'left-mapped' | 'divergence'; stepped?: boolean } = {},
  ): FindingView[] {
    let q = this.k
      .selectFrom('unmap_findings as f')
      .innerJoin('streams as s', 's.id', 'f.domain')
      .innerJoin('events as e', 'e.position', 'f.position')
      .select([
        'f.position',
        's.name',
        'f.caller',
        'f.site',
        'f.iova',
        'f.size',
        'f.unmapped',
        'f.predicted',
        'f.divergent',
        'f.detail',
        'e.time',
        'f.collateral_bytes',
        'f.left_bytes',
        'f.step',
        'f.step_why',
        'f.step_pos',
        'f.step_others',
      ])
      .orderBy('f.position');
    if (filter.domain !== undefined) q = q.where('s.id', '=', BigInt(this.domain(filter.domain).id));
    if (filter.caller !== undefined) q = q.where('f.caller', '=', filter.caller);
    if (filter.upTo !== undefined) q = q.where('f.position', '<=', BigInt(filter.upTo));
    if (filter.kind === 'over-unmap') q = q.where('f.collateral_bytes', '>', toDb(0n));
    if (filter.stepped === true) q = q.where('f.step', '=', 'stepped');
    // Findings stored before schema 8 have no verdict (NULL): harmful until a rebuild.
    if (filter.stepped === false) q = q.where((w) => w.or([w('f.step', 'is', null), w('f.step', '!=', 'stepped')]));
    if (filter.kind === 'left-mapped') q = q.where('f.left_bytes', '>', toDb(0n));
    if (filter.kind === 'divergence') q = q.where('f.divergent', '=', 1n);
    const compiled = q.compile();
    const rows = this.prep<unknown[], FindingRow>(compiled.sql).all(...compiled.parameters);
    return rows.map((r) => this.findingOf(r));
  }

  /** Faults at IOVAs in [start, end) up to a position (a direct query: no query builder to load). */
  private faultsIn(d: DomainInfo, start: bigint, end: bigint, upTo: number): FaultView[] {
    const rows = this.prep<[domain: number, upTo: number, lowest: bigint, highest: bigint], FaultRow>(
      `SELECT f.position, s.name, f.iova, f.device, f.flags, f.cause, f.cause_position, f.detail, e.time
           FROM faults f JOIN streams s ON s.id = f.domain JOIN events e ON e.position = f.position
          WHERE f.domain = ? AND f.position <= ? AND f.iova >= ? AND f.iova <= ? ORDER BY f.position`,
    ).all(d.id, upTo, toDb(start), toDb(end - 1n));
    return rows.map((r) => this.faultOf(r));
  }

  private faultOf(r: FaultRow): FaultView {
    const f: FaultView = {
      position: Number(r.position),
      domain: r.name,
      iova: fromDb(r.iova),
      cause: r.cause,
      detail: projectionJson<Record<string, unknown>>(() => `the fault at event #${r.position} (faults.detail)`, r.detail),
    };
    if (r.device !== null) f.device = r.device;
    if (r.flags !== null) f.flags = Number(r.flags);
    if (r.cause_position !== null) f.causePosition = Number(r.cause_position);
    if (r.time) f.time = r.time;
    return f;
  }

  faults(filter: { domain?: string; upTo?: number; cause?: string } = {}): FaultView[] {
    let q = this.k
      .selectFrom('faults as f')
      .innerJoin('streams as s', 's.id', 'f.domain')
      .innerJoin('events as e', 'e.position', 'f.position')
      .select(['f.position', 's.name', 'f.iova', 'f.device', 'f.flags', 'f.cause', 'f.cause_position', 'f.detail', 'e.time'])
      .orderBy('f.position');
    if (filter.domain !== undefined) q = q.where('s.id', '=', BigInt(this.domain(filter.domain).id));
    if (filter.upTo !== undefined) q = q.where('f.position', '<=', BigInt(filter.upTo));
    if (filter.cause !== undefined) q = q.where('f.cause', '=', filter.cause);
    const c = q.compile();
    const rows = this.prep<unknown[], FaultRow>(c.sql).all(...c.parameters);
    return rows.map((r) => this.faultOf(r));
  }

  /** Per caller and site: how its unmaps relate to its maps (projections/callers.ts). */
  callers(filter: { domain?: string; caller?: string; examples?: number } = {}): CallerView[] {
    if (filter.examples !== undefined && !(Number.isInteger(filter.examples) && filter.examples >= 0)) {
      throw new QueryError(`examples ${filter.examples}: give a whole number, 0 or more`);
    }
    const f = {
      ...(filter.domain !== undefined ? { domain: this.domain(filter.domain).id } : {}),
      ...(filter.caller !== undefined ? { caller: filter.caller } : {}),
      ...(filter.examples !== undefined ? { examples: filter.examples } : {}),
    };
    try {
      return callerAnalysis(this.db, f);
    } catch (e) {
      // Rows whose JSON (the maps an unmap touched) or numbers do not have their shape: a projection.
      const malformed = e instanceof Error && (e as { code?: string }).code === 'SQLITE_ERROR' && /malformed JSON/.test(e.message);
      if (!malformed && !(e instanceof TypeError || e instanceof SyntaxError || e instanceof RangeError)) throw e;
      throw unreadable('the caller analysis (caller_symmetry and asymmetric_unmaps)', (e as Error).message);
    }
  }

  /** Why the projections are incomplete (a ledger upgraded from an older schema), if they are. */
  staleProjections(): string | undefined {
    return getMeta(this.db, 'rebuild-needed');
  }

  /** Map and unmap commands the domain refused (stored with their errno), for replay's comparison. */
  refusedCommands(): number {
    const r = this.prep<[], { n: bigint }>("SELECT count(*) AS n FROM events WHERE type IN ('map','unmap') AND json_extract(data, '$.body.ok') = 0").get()!;
    return Number(r.n);
  }

  /** Counts of events by type (for summaries). */
  counts(): Record<string, number> {
    const rows = this.prep<[], { type: string; n: bigint }>('SELECT type, count(*) AS n FROM events GROUP BY type').all();
    return Object.fromEntries(rows.map((r) => [r.type, Number(r.n)]));
  }
}

/** A summarized event's body, typed (the summary's body was checked when it was read). */
function typed(e: EventSummary): DecodedBody {
  return decodeBody(e.type as EventType, e.body);
}

/** The range of a summarized map or unmap event. */
function rangeOf(e: EventSummary): IovaRange | undefined {
  const b = typed(e);
  return b.type === 'map' || b.type === 'unmap' ? { iova: b.body.iova, size: b.body.size } : undefined;
}

/** Is this a map inferred from before the trace (from the unmap that removed it)? */
function isInferred(e: EventSummary): boolean {
  return e.body.inferred === 'before-trace';
}

/** Microseconds between two trace timestamps in seconds ("511.102331"); undefined for other times. */
function microsApart(a: string, b: string): number | undefined {
  if (!/^\d+\.\d+$/.test(a) || !/^\d+\.\d+$/.test(b)) return undefined;
  const us = (t: string) => {
    const [i, f = ''] = t.split('.');
    return BigInt(i!) * 1_000_000n + BigInt((f + '000000').slice(0, 6));
  };
  const d = us(b) - us(a);
  return Number(d < 0n ? -d : d);
}

/** Is the iova inside the most recent page lifetime of a blame (the page a fault would have hit)? */
function inLastPage(iova: bigint, b: BlameView): boolean {
  const pg = b.chain[0]?.page;
  if (!pg) return false;
  return iova >= pg.iova && iova < pg.iova + pg.pageSize * pg.count;
}

/** The page of a run that holds iova (count 1; the run's other fields). */
function pageAt(run: PageView, iova: bigint): PageView {
  const off = ((iova - run.iova) / run.pageSize) * run.pageSize;
  const page: PageView = { ...run, iova: run.iova + off, paddr: run.paddr + off, count: 1n };
  delete page.validTo;
  return page;
}

/** The same page: same place, size, physical address, protection, level and map event. */
function samePage(a: PageView, b: PageView): boolean {
  return a.iova === b.iova && a.pageSize === b.pageSize && a.paddr === b.paddr && a.prot === b.prot && a.level === b.level && a.mappedBy === b.mappedBy;
}

/**
 * Do two sets of runs hold the same pages in [start, end)? Each run is cut to its pages that
 * overlap the range, and runs that continue each other (next page, next physical address, same
 * size, protection, level and map event) are joined, so that a run cut in two around the range
 * compares equal to the run it was cut from.
 */
function samePagesIn(a: readonly PageView[], b: readonly PageView[], start: bigint, end: bigint): boolean {
  const x = pagesIn(a, start, end);
  const y = pagesIn(b, start, end);
  return x.length === y.length && x.every((p, i) => samePage(p, y[i]!) && p.count === y[i]!.count);
}

function pagesIn(runs: readonly PageView[], start: bigint, end: bigint): PageView[] {
  const cut: PageView[] = [];
  for (const r of runs) {
    const ps = r.pageSize;
    const j0 = start > r.iova ? (start - r.iova) / ps : 0n;
    const j1 = end - r.iova >= ps * r.count ? r.count : (end - r.iova + ps - 1n) / ps;
    if (j1 > j0) cut.push({ ...r, iova: r.iova + j0 * ps, paddr: r.paddr + j0 * ps, count: j1 - j0 });
  }
  cut.sort((p, q) => (p.iova < q.iova ? -1 : p.iova > q.iova ? 1 : 0));
  const out: PageView[] = [];
  for (const r of cut) {
    const prev = out[out.length - 1];
    const bytes = prev ? prev.pageSize * prev.count : 0n;
    if (
      prev &&
      prev.iova + bytes === r.iova &&
      prev.paddr + bytes === r.paddr &&
      prev.pageSize === r.pageSize &&
      prev.prot === r.prot &&
      prev.level === r.level &&
      prev.mappedBy === r.mappedBy
    ) {
      out[out.length - 1] = { ...prev, count: prev.count + r.count };
    } else out.push(r);
  }
  return out;
}

/** The columns of a runs row that a page is made of (valid_to may be NULL). */
const RUN_COLUMNS = ['id', 'iova', 'paddr', 'page_size', 'count', 'prot', 'level', 'map_pos', 'valid_from'] as const;

/** A core domain holding the given live runs (for hardware statistics). */
function coreOfRuns(d: DomainInfo, c: RunColumns): Domain {
  const core = new Domain(d.profile);
  const origins = new Map<number, { ref: number; iova: bigint; paddr: bigint; size: bigint; prot: number }>();
  const runs: Run[] = [];
  for (let i = 0; i < c.n; i++) {
    const ref = c.mapPos[i]!;
    const pageSize = pageSizeOf(c.shift[i]!);
    const count = BigInt(c.count[i]!);
    let origin = origins.get(ref);
    if (!origin) {
      origin = { ref, iova: c.iova[i]!, paddr: c.paddr[i]!, size: pageSize * count, prot: c.prot[i]! };
      origins.set(ref, origin);
    }
    const level = c.level[i]!;
    const lv = d.profile.format.levels[level];
    if (lv === undefined || c.shift[i]! < lv.shift)
      throw new RangeError(
        `a run at 0x${c.iova[i]!.toString(16)} has level ${level} and page shift ${c.shift[i]}, which the ${d.profile.format.name} format has not`,
      );
    const repeat = repeatOf(c.shift[i]!, lv.shift);
    runs.push({ iova: c.iova[i]!, paddr: c.paddr[i]!, pageSize, count, level, repeat, origin, row: 0, from: 0 });
  }
  core.load(runs);
  return core;
}

/** One PageView per run. */
function pagesOf(c: RunColumns): PageView[] {
  const out = new Array<PageView>(c.n);
  for (let i = 0; i < c.n; i++) {
    out[i] = {
      iova: c.iova[i]!,
      paddr: c.paddr[i]!,
      pageSize: pageSizeOf(c.shift[i]!),
      count: BigInt(c.count[i]!),
      prot: c.prot[i]!,
      level: c.level[i]!,
      mappedBy: c.mapPos[i]!,
      validFrom: c.from[i]!,
      row: c.id[i]!,
    };
  }
  return out;
}

/** A core domain holding the given live pages (for walks). */
function coreOf(d: DomainInfo, pages: PageView[]): Domain {
  const core = new Domain(d.profile);
  const origins = new Map<number, { ref: number; iova: bigint; paddr: bigint; size: bigint; prot: number }>();
  const runs: Run[] = pages.map((pg) => {
    let origin = origins.get(pg.mappedBy);
    if (!origin) {
      origin = { ref: pg.mappedBy, iova: pg.iova, paddr: pg.paddr, size: pg.pageSize * pg.count, prot: pg.prot };
      origins.set(pg.mappedBy, origin);
    }
    const lv = d.profile.format.levels[pg.level]!;
    return {
      iova: pg.iova,
      paddr: pg.paddr,
      pageSize: pg.pageSize,
      count: pg.count,
      level: pg.level,
      repeat: repeatOf(shiftOf(pg.pageSize), lv.shift),
      origin,
      row: 0,
      from: 0,
    };
  });
  core.load(runs);
  return core;
}
