/**
 * The caller-symmetry projection (`caller_symmetry`, `asymmetric_unmaps`): how each caller's
 * unmaps relate to the maps live when it issued them (docs/migrate.md, classes). The
 * classification is a fact of the item (`Decided.classification`, core/symmetry.ts, taken by the
 * ledger before the core carries the unmap out); this projection counts it per (domain, caller,
 * site) and writes a row for each unmap that cuts, straddles, misses or spans a hole.
 *
 * The counts are gathered over the batches of a transaction and added to the stored ones in `flush`,
 * once per (domain, caller, site) and transaction. The byte totals are summed
 * here, not in SQL: stored biased, a sum past 2^63 would overflow SQLite's integers (and past 2^64
 * the column), so they saturate at 2^64 - 1 instead, which gives the same total whatever the
 * batches (every term is non-negative).
 */
import type Database from 'better-sqlite3';
import { hex, U64_MAX } from '../core/address.js';
import { fromDb, toDb } from './codec.js';
import type { Decided, Projection, ProjectionWriter } from './registry.js';
import { statementPreparer, type U64 } from './statements.js';

/** The counts of one (domain, caller, site) that a batch adds to `caller_symmetry`; byte totals biased (codec.ts) when bound. */
export interface SymmetryRow {
  domain: number;
  caller: string;
  site: string;
  maps: number;
  unmaps: number;
  exact: number;
  spans: number;
  cuts: number;
  misses: number;
  straddles: number;
  foreign_unmaps: number;
  unmap_bytes: bigint;
  cut_bytes: bigint;
}

/** A byte total, held at 2^64 - 1 when it would pass it (one caller can unmap a whole 64-bit space many times). */
export function saturated(v: bigint): bigint {
  return v > U64_MAX ? U64_MAX : v;
}

export const callerSymmetry: Projection = {
  name: 'caller-symmetry',
  tables: ['caller_symmetry', 'asymmetric_unmaps'],
  open(db: Database.Database, path: string): ProjectionWriter {
    const p = statementPreparer(db, path);
    const upsertSym = p<[SymmetryRow]>(
      `INSERT INTO caller_symmetry (domain, caller, site, maps, unmaps, exact, spans, cuts, misses, straddles, foreign_unmaps, unmap_bytes, cut_bytes)
         VALUES (@domain, @caller, @site, @maps, @unmaps, @exact, @spans, @cuts, @misses, @straddles, @foreign_unmaps, @unmap_bytes, @cut_bytes)
         ON CONFLICT (domain, caller, site) DO UPDATE SET maps = maps + excluded.maps, unmaps = unmaps + excluded.unmaps,
           exact = exact + excluded.exact, spans = spans + excluded.spans, cuts = cuts + excluded.cuts,
           misses = misses + excluded.misses, straddles = straddles + excluded.straddles, foreign_unmaps = foreign_unmaps + excluded.foreign_unmaps,
           unmap_bytes = excluded.unmap_bytes, cut_bytes = excluded.cut_bytes`,
    );
    const symBytes = p<[domain: number, caller: string, site: string], { unmap_bytes: bigint; cut_bytes: bigint }>(
      'SELECT unmap_bytes, cut_bytes FROM caller_symmetry WHERE domain = ? AND caller = ? AND site = ?',
    ).safeIntegers(true);
    const insAsym = p<
      [
        position: number,
        domain: number,
        caller: string,
        site: string,
        cls: string,
        foreignMap: 0 | 1,
        iova: U64,
        size: U64,
        maps: string,
        missedAfter: number | null,
        keptBytes: U64,
        largestPage: U64,
        safePage: U64,
        legacyOver: U64,
        legacyLeft: U64,
        splitOver: U64,
        splitLeft: U64,
        strictLeft: U64,
        strictErrno: string | null,
      ]
    >(
      `INSERT INTO asymmetric_unmaps (position, domain, caller, site, class, foreign_map, iova, size, maps, missed_after, kept_bytes, largest_page, safe_page,
           legacy_over, legacy_left, split_over, split_left, strict_left, strict_errno)
         VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
    );

    const counts = new Map<string, SymmetryRow>();
    /**
     * The byte totals this writer last wrote (or read) for a (domain, caller, site), so that a
     * flush does not read them again: the ledger opens its writers afresh when another connection
     * has written, and a rolled-back transaction discards the writer.
     */
    const written = new Map<string, { unmap: bigint; cut: bigint }>();
    const countOf = (e: Decided): SymmetryRow => {
      const key = `${e.domain}\0${e.caller}\0${e.site}`;
      let c = counts.get(key);
      if (!c) {
        c = {
          domain: e.domain,
          caller: e.caller,
          site: e.site,
          maps: 0,
          unmaps: 0,
          exact: 0,
          spans: 0,
          cuts: 0,
          misses: 0,
          straddles: 0,
          foreign_unmaps: 0,
          unmap_bytes: 0n,
          cut_bytes: 0n,
        };
        counts.set(key, c);
      }
      return c;
    };

    return {
      apply(batch: readonly Decided[]): void {
        for (const e of batch) {
          // A mapping inferred from before the trace is nobody's: not counted.
          if (e.type === 'map') {
            if (e.body.inferred === undefined) countOf(e).maps++;
            continue;
          }
          if (e.type !== 'unmap') continue;
          const { analysis: a, foreign, behaviours: b, mapsBy, missedAfter } = e.classification;
          const size = e.body.size;
          const sc = countOf(e);
          sc.unmaps++;
          sc[a.class]++;
          if (foreign) sc.foreign_unmaps++;
          sc.unmap_bytes = saturated(sc.unmap_bytes + size);
          sc.cut_bytes = saturated(sc.cut_bytes + a.keptBytes);
          if (b === undefined) continue;
          insAsym.run(
            e.position,
            e.domain,
            e.caller,
            e.site,
            a.class,
            foreign ? 1 : 0,
            toDb(e.body.iova),
            toDb(size),
            JSON.stringify(
              a.maps.map((o, i) => {
                const by = mapsBy[i]!;
                return { position: o.ref, iova: hex(o.iova), size: hex(o.size), caller: by.caller, ...(by.site ? { site: by.site } : {}) };
              }),
            ),
            missedAfter ?? null,
            toDb(a.keptBytes),
            toDb(a.largestPage),
            toDb(a.safePage),
            toDb(b.legacy.over),
            toDb(b.legacy.left),
            toDb(b.split.over),
            toDb(b.split.left),
            toDb(b.strict.left),
            b.strict.errno ?? null,
          );
        }
      },
      flush(): void {
        for (const [key, c] of counts) {
          let had = written.get(key);
          if (had === undefined) {
            const row = symBytes.get(c.domain, c.caller, c.site);
            had = row ? { unmap: fromDb(row.unmap_bytes), cut: fromDb(row.cut_bytes) } : { unmap: 0n, cut: 0n };
          }
          const unmap = saturated(had.unmap + c.unmap_bytes);
          const cut = saturated(had.cut + c.cut_bytes);
          upsertSym.run({ ...c, unmap_bytes: toDb(unmap), cut_bytes: toDb(cut) });
          written.set(key, { unmap, cut });
        }
        counts.clear();
      },
    };
  },
};
