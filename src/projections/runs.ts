/**
 * The page-table projection (`runs`, `run_log`, `run_snapshots`): every run of pages a domain held,
 * with the events it was valid between, and the same history as compact blobs for `stateAt`
 * (runlog.ts): one `run_log` piece per domain per write of rows, and every live run of a domain
 * every `snapshotEvery`-th event of it.
 *
 * The ledger keeps the live runs in its core domains (deciding needs them) and hands each change
 * as a fact of the item (`Decided.runs`): the runs born, with the row id it gave each in order of
 * birth (max(id) + 1 per write transaction, the id SQLite would give), and the ids of the rows
 * ended. Rows are held here until FLUSH_EVERY have gathered, a snapshot comes, or the transaction
 * ends, so that a run born and ended meanwhile (most mappings live briefly) is inserted once,
 * already ended; its id is the same either way. A snapshot is a fact too (`Decided.runSnapshot`,
 * taken by the ledger just after the event): the rows gathered are written first, so that no log
 * piece holds entries on both sides of a snapshot (runlog.ts `runsFromLog` relies on it).
 */
import type Database from 'better-sqlite3';
import { runEnd } from '../core/domain.js';
import { toDb } from './codec.js';
import type { Decided, Projection, ProjectionWriter, RunBirth } from './registry.js';
import { decodeEnds, decodeRuns, domainText, emptyRuns, encodeEnds, encodeRuns, mergePieces, RunWriter, shiftOf, type LogPiece } from './runlog.js';
import { statementPreparer, type U64 } from './statements.js';

/** Runs rows held before they are written. */
const FLUSH_EVERY = 16384;
/** Small run-log pieces (one per small flush, e.g. one per durable single-command append) are merged this many at a time. */
const MERGE_SMALL = 32;
/** A piece with fewer entries than this counts as small. */
const SMALL_PIECE = 256;
/** The latest snapshot of a domain (0 when none): small pieces are merged only among those after it. */
const LATEST_SNAPSHOT = 'SELECT coalesce(max(position), 0) FROM run_snapshots WHERE domain = @d';

/** A row born and not written yet: its domain, its birth and, once ended, its end. */
interface PendingRun {
  domain: number;
  from: number;
  to: number | null;
  birth: RunBirth;
}

/** A domain's run-log entries since its last piece: runs born (with their end when known) and rows ended that were written earlier. */
interface DomainLog {
  births: RunWriter | undefined;
  endIds: number[];
  endTos: number[];
  /** Small pieces after the latest snapshot (read from the file when first needed in this writer). */
  small: number | undefined;
}

export const runs: Projection = {
  name: 'runs',
  tables: ['runs', 'run_log', 'run_snapshots'],
  open(db: Database.Database, path: string): ProjectionWriter {
    const p = statementPreparer(db, path);
    const insRun = p<
      [
        id: number,
        domain: number,
        iova: U64,
        iovaLast: U64,
        paddr: U64,
        pageSize: U64,
        count: bigint,
        level: number,
        prot: number,
        mapPos: number,
        validFrom: number,
        validTo: number | null,
      ]
    >('INSERT INTO runs (id, domain, iova, iova_last, paddr, page_size, count, level, prot, map_pos, valid_from, valid_to) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)');
    const closeRun = p<[validTo: number, id: number]>('UPDATE runs SET valid_to = ? WHERE id = ?');
    const insLog = p<[domain: number, firstPos: number, lastPos: number, small: 0 | 1, births: Buffer, ends: Buffer]>(
      'INSERT INTO run_log (domain, first_pos, last_pos, small, births, ends) VALUES (?,?,?,?,?,?)',
    );
    const smallCount = p<[{ d: number }], number>(`SELECT count(*) FROM run_log WHERE domain = @d AND first_pos > (${LATEST_SNAPSHOT}) AND small = 1`)
      .safeIntegers(false)
      .pluck();
    const smallPieces = p<[{ d: number }], { first_pos: number; births: Buffer; ends: Buffer }>(
      `SELECT first_pos, births, ends FROM run_log WHERE domain = @d AND first_pos > (${LATEST_SNAPSHOT}) AND small = 1 ORDER BY first_pos`,
    ).safeIntegers(false);
    const delLog = p<[domain: number, firstPos: number]>('DELETE FROM run_log WHERE domain = ? AND first_pos = ?');
    const insSnap = p<[domain: number, position: number, runs: number, data: Buffer]>(
      'INSERT OR REPLACE INTO run_snapshots (domain, position, runs, data) VALUES (?,?,?,?)',
    );

    /** Rows born and not written yet, by id (in order of birth, so of id). */
    let pending = new Map<number, PendingRun>();
    const logs = new Map<number, DomainLog>();
    const logOf = (domain: number): DomainLog => {
      let l = logs.get(domain);
      if (l === undefined) logs.set(domain, (l = { births: undefined, endIds: [], endTos: [], small: undefined }));
      return l;
    };

    /** Many small pieces make stateAt read many rows: merge them into one. */
    const mergeSmall = (domain: number, l: DomainLog): void => {
      const rows = smallPieces.all({ d: domain });
      const pieces: LogPiece[] = rows.map((r) => ({
        births: decodeRuns(r.births, () => `the run log of domain ${domainText(db, domain)} (run_log row from event #${r.first_pos}, births)`),
        ends: decodeEnds(r.ends, () => `the run log of domain ${domainText(db, domain)} (run_log row from event #${r.first_pos}, ends)`),
      }));
      const m = mergePieces(pieces);
      for (const r of rows) delLog.run(domain, r.first_pos);
      insLog.run(domain, m.first, m.last, 0, m.births, m.ends);
      l.small = 0;
    };

    /** The run-log piece of one domain's changes since its last one (nothing when there are none). */
    const writePiece = (domain: number, l: DomainLog): void => {
      const births = l.births;
      const nEnds = l.endIds.length;
      if (!births && !nEnds) return;
      let first = Infinity;
      let last = -Infinity;
      if (births) ({ first, last } = births.span());
      for (const t of l.endTos) {
        if (t < first) first = t;
        if (t > last) last = t;
      }
      const small = (births?.n ?? 0) + nEnds < SMALL_PIECE ? 1 : 0;
      insLog.run(domain, first, last, small, births ? births.encode() : encodeRuns(emptyRuns(0)), encodeEnds(l.endIds, l.endTos));
      l.births = undefined;
      l.endIds = [];
      l.endTos = [];
      if (small) {
        l.small ??= smallCount.get({ d: domain }) ?? 0; // count(*): always one row
        if (++l.small >= MERGE_SMALL) mergeSmall(domain, l);
      }
    };

    /** Writes the rows born so far, in order of birth, and each domain's log piece. */
    const write = (): void => {
      for (const r of pending.values()) {
        const { id, run, caller } = r.birth;
        insRun.run(
          id,
          r.domain,
          toDb(run.iova),
          toDb(runEnd(run) - 1n),
          toDb(run.paddr),
          toDb(run.pageSize),
          run.count,
          run.level,
          run.origin.prot,
          run.origin.ref,
          r.from,
          r.to,
        );
        (logOf(r.domain).births ??= new RunWriter()).push(
          id,
          run.iova,
          run.paddr,
          shiftOf(run.pageSize),
          Number(run.count),
          run.level,
          run.origin.prot,
          run.origin.ref,
          r.from,
          r.to ?? NaN,
          caller,
        );
      }
      pending = new Map();
      for (const [domain, l] of logs) writePiece(domain, l);
    };

    return {
      apply(batch: readonly Decided[]): void {
        for (const e of batch) {
          const ch = e.runs;
          if (ch !== undefined) {
            for (const id of ch.ended) {
              const r = pending.get(id);
              if (r !== undefined) r.to = e.position;
              else {
                closeRun.run(e.position, id);
                const l = logOf(e.domain);
                l.endIds.push(id);
                l.endTos.push(e.position);
              }
            }
            for (const b of ch.born) pending.set(b.id, { domain: e.domain, from: e.position, to: null, birth: b });
          }
          const snap = e.runSnapshot;
          if (snap !== undefined) {
            write();
            insSnap.run(e.domain, e.position, snap.n, snap.encode());
            // Pieces before a snapshot are never read with pieces after it: they are not merged any more.
            logOf(e.domain).small = 0;
          }
        }
        if (pending.size >= FLUSH_EVERY) write();
      },
      flush(): void {
        write();
      },
    };
  },
};
