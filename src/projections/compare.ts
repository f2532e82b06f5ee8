/**
 * Read APIs for comparing two ledgers at their ends (the verification of `migrate`,
 * src/migrate/verify.ts): what a domain maps and what each caller intends just after a position,
 * and which event last removed a page or ended a caller's intent at an IOVA. Everything comes
 * from the stored projections (the run log and the runs and intent tables), through a `Queries`.
 */
import type Database from 'better-sqlite3';
import { UNKNOWN_CALLER } from './ledger.js';
import { fromDb, toDb } from './codec.js';
import type { Queries } from './queries.js';

/** Mapped pages of one run: [start, end) -> paddr, made by the map event `mapPos` of `caller`. */
export interface PageRange {
  start: bigint;
  end: bigint;
  paddr: bigint;
  prot: number;
  mapPos: number;
  /** The map event's caller ('' when the run log does not name it). */
  caller: string;
}

/** One interval of a caller's intent, with the map event it comes from. */
export interface IntentRange {
  start: bigint;
  end: bigint;
  mapPos: number;
}

/** Runs and intent intervals up to this long are looked up in a window of the (domain, iova) indexes. */
const SHORT = 2n * 1024n * 1024n;

export class EndReader {
  private readonly longIntent = new Map<string, Array<{ start: bigint; end: bigint; to: number }>>();
  private readonly statements = new Map<string, Database.Statement>();

  constructor(readonly q: Queries) {}

  /** A statement prepared once per reader, typed by what it binds (`P`) and returns (`R`) as its call site declares. */
  private prep<P extends unknown[], R>(sql: string): Database.Statement<P, R> {
    let st = this.statements.get(sql);
    if (!st) this.statements.set(sql, (st = this.q.db.prepare(sql)));
    return st as unknown as Database.Statement<P, R>;
  }

  /** A domain's mapped pages just after event `at`, one range per run, in IOVA order. */
  pagesAt(domain: string, at: number): PageRange[] {
    const { runs } = this.q.stateAt(domain, at);
    const out: PageRange[] = [];
    for (let i = 0; i < runs.n; i++) {
      const start = runs.iova[i]!;
      const k = runs.caller[i]!;
      out.push({
        start,
        end: start + (BigInt(runs.count[i]!) << BigInt(runs.shift[i]!)),
        paddr: runs.paddr[i]!,
        prot: runs.prot[i]!,
        mapPos: runs.mapPos[i]!,
        caller: k ? runs.names[k - 1]! : '',
      });
    }
    return out;
  }

  /** What each caller of a domain intends just after event `at` (its maps minus its own unmaps), sorted by IOVA. */
  intentAt(domain: string, at: number): Map<string, IntentRange[]> {
    const d = this.q.domain(domain);
    const rows = this.prep<[domain: number, at: number, at: number], [caller: string, iova: bigint, iovaLast: bigint, mapPos: bigint]>(
      `SELECT caller, iova, iova_last, coalesce(map_pos, valid_from) FROM intent INDEXED BY intent_caller
        WHERE domain = ? AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?) ORDER BY caller, iova`,
    )
      .raw(true)
      .safeIntegers(true)
      .all(d.id, at, at);
    const out = new Map<string, IntentRange[]>();
    let list: IntentRange[] | undefined;
    let of = '';
    for (const [caller, iova, last, mapPos] of rows) {
      if (list === undefined || caller !== of) {
        of = caller;
        list = out.get(caller);
        if (!list) out.set(caller, (list = []));
      }
      list.push({ start: fromDb(iova), end: fromDb(last) + 1n, mapPos: Number(mapPos) });
    }
    return out;
  }

  /** The last event at or before `at` that removed the page holding iova; undefined when none did. */
  lastRemoval(domain: string, iova: bigint, at: number): number | undefined {
    const d = this.q.domain(domain);
    const x = toDb(iova);
    const near = toDb(iova >= SHORT ? iova - SHORT : 0n);
    const short = this.prep<[{ d: number; x: bigint; near: bigint; at: number }], number | null>(
      `SELECT max(valid_to) FROM runs WHERE domain = @d AND iova <= @x AND iova >= @near AND iova_last >= @x AND valid_to IS NOT NULL AND valid_to <= @at`,
    )
      .pluck()
      .safeIntegers(false)
      .get({ d: d.id, x, near, at });
    let last = short ?? undefined;
    if (d.maxSpan > SHORT) {
      const far = toDb(iova >= d.maxSpan ? iova - d.maxSpan : 0n);
      const long =
        this.prep<[{ d: number; x: bigint; far: bigint; at: number }], number | null>(
          `SELECT max(valid_to) FROM runs INDEXED BY runs_long
          WHERE domain = @d AND iova <= @x AND iova >= @far AND iova_last >= @x AND iova_last - iova >= 2097152 AND valid_to IS NOT NULL AND valid_to <= @at`,
        )
          .pluck()
          .safeIntegers(false)
          .get({ d: d.id, x, far, at }) ?? null; // max(): always one row
      if (long !== null && (last === undefined || long > last)) last = long;
    }
    return last;
  }

  /** The last event at or before `at` that ended the caller's intent at iova; undefined when none did. */
  lastIntentEnd(domain: string, caller: string, iova: bigint, at: number): number | undefined {
    const d = this.q.domain(domain);
    const x = toDb(iova);
    const near = toDb(iova >= SHORT ? iova - SHORT : 0n);
    const short = this.prep<[{ d: number; c: string; x: bigint; near: bigint; at: number }], number | null>(
      `SELECT max(valid_to) FROM intent INDEXED BY intent_caller
        WHERE domain = @d AND caller = @c AND iova <= @x AND iova >= @near AND iova_last >= @x AND valid_to IS NOT NULL AND valid_to <= @at`,
    )
      .pluck()
      .safeIntegers(false)
      .get({ d: d.id, c: caller, x, near, at });
    let last = short ?? undefined;
    // Intervals longer than the window: read once per caller (intent has no index for them).
    const key = `${d.id}\0${caller}`;
    let long = this.longIntent.get(key);
    if (!long) {
      const rows = this.prep<[domain: number, caller: string], [iova: bigint, iovaLast: bigint, validTo: bigint]>(
        `SELECT iova, iova_last, valid_to FROM intent INDEXED BY intent_caller
          WHERE domain = ? AND caller = ? AND valid_to IS NOT NULL AND iova_last - iova >= 2097152`,
      )
        .raw(true)
        .safeIntegers(true)
        .all(d.id, caller);
      long = rows.map(([s, l, t]) => ({ start: fromDb(s), end: fromDb(l) + 1n, to: Number(t) }));
      this.longIntent.set(key, long);
    }
    for (const r of long) if (r.start <= iova && r.end > iova && r.to <= at && (last === undefined || r.to > last)) last = r.to;
    return last;
  }

  /** Does any map or unmap of the ledger have this caller (UNKNOWN_CALLER: one without a caller)? */
  hasCaller(caller: string): boolean {
    // Events SQLite cannot read as JSON take no part; the first one is named by the reading that follows.
    const r = this.prep(
      "SELECT 1 FROM events WHERE type IN ('map','unmap') AND (CASE WHEN json_valid(data) THEN json_extract(data, '$.who.caller') END) IS ? LIMIT 1",
    ).get(caller === UNKNOWN_CALLER ? null : caller);
    if (r === undefined) {
      // Before saying nobody has that caller: an event that cannot be read is the answer to give.
      const bad = this.prep('SELECT position FROM events WHERE NOT json_valid(data) LIMIT 1').pluck().get() as bigint | number | undefined;
      if (bad !== undefined) this.q.event(Number(bad));
    }
    return r !== undefined;
  }
}
