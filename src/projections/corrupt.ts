/**
 * Projections that cannot be read, and a hash chain that does not hold: the errors, and the
 * canonical shape of the projection tables that `rebuild` recreates them from.
 *
 * A projection (`run_log`, `run_snapshots`, `intent_snapshots`, `hw_state`, …) is derived from the
 * events, so damage to it loses nothing: every reader checks what it decodes before it trusts a
 * length, a count or an index, and says which projection it could not read and that `rebuild`
 * recomputes it (exit 1 on the command line, never an internal error).
 */
import type Database from 'better-sqlite3';
import { LedgerFault } from '../core/errors.js';
import { openDatabase } from '../events/db.js';
import type { VerifyResult } from '../events/chain.js';

/** The projection tables: everything `rebuild` recomputes from the events. */
export const PROJECTION_TABLES = [
  'runs',
  'run_log',
  'run_snapshots',
  'intent_snapshots',
  'hw_state',
  'intent',
  'unmap_findings',
  'faults',
  'caller_symmetry',
  'asymmetric_unmaps',
  'checkpoints',
] as const;

/** A projection that cannot be read (damaged, or changed outside iommu-ledger). */
export class CorruptProjectionError extends LedgerFault {
  readonly exitCode = 1;
  constructor(message: string) {
    super(message);
    this.name = 'CorruptProjectionError';
  }
}

type Table = (typeof PROJECTION_TABLES)[number];

/**
 * The projection (registry.ts) that owns each projection table, as `rebuild --projection` names
 * it; `checkpoints` is the ledger's own. Here, not taken from the registry, because the commands
 * that meet damage read the tables without loading the write path; a test holds it to the registry.
 */
export const TABLE_OWNERS: Readonly<Record<Table, string | undefined>> = {
  runs: 'runs',
  run_log: 'runs',
  run_snapshots: 'runs',
  intent: 'intent',
  intent_snapshots: 'intent',
  caller_symmetry: 'caller-symmetry',
  asymmetric_unmaps: 'caller-symmetry',
  unmap_findings: 'findings',
  faults: 'faults',
  hw_state: 'hardware',
  checkpoints: undefined,
};

const REPAIR = "the events are not affected: 'iommu-ledger rebuild' recomputes the projections from them";

/** The cheaper repair when `tables` have one owner: the rebuild of that projection alone (else nothing). */
function alone(tables: readonly string[]): string {
  const owners = new Set(tables.map((t) => TABLE_OWNERS[t as Table]));
  const [owner] = owners;
  return owners.size === 1 && owner !== undefined ? ` (or 'iommu-ledger rebuild --projection ${owner}', this projection alone)` : '';
}

/** The projection tables a message names (whole words: `run_log`, `runs`, …). */
const TABLE_WORDS = new RegExp(`\\b(${PROJECTION_TABLES.join('|')})\\b`, 'g');

/** `what` (a projection, and which row, naming its tables) cannot be read, and why. */
export function unreadable(what: string, reason: string): CorruptProjectionError {
  return new CorruptProjectionError(
    `${what} cannot be read (${reason}): the projection was damaged or changed outside iommu-ledger; ${REPAIR}${alone(what.match(TABLE_WORDS) ?? [])}`,
  );
}

/** JSON text stored in a projection, parsed; `what` names it when it is not JSON. */
export function projectionJson<T>(what: () => string, text: unknown): T {
  if (typeof text !== 'string') throw unreadable(what(), `${text === null ? 'NULL' : typeof text} where JSON text belongs`);
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw unreadable(what(), `not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * The events as they are do not form the hash chain: `rebuild` refuses to compute projections from
 * them. `some`: a rebuild of some projections that accepted a broken chain, refused all the same:
 * the projections it kept would still follow the events as they were.
 */
export class BrokenChainError extends LedgerFault {
  readonly exitCode = 1;
  constructor(
    readonly chain: VerifyResult,
    some = false,
  ) {
    super(
      some
        ? `rebuild refused: the hash chain is broken (${chain.message}); rebuilding some projections from the events as they are now would leave the others following them as they were, so nothing was changed. ` +
            "Restore the ledger from a copy, or rebuild every projection from the events as they are now: 'iommu-ledger rebuild --accept-broken-chain' (without --projection)"
        : `rebuild refused: the hash chain is broken (${chain.message}); rebuilding would recompute every projection from events changed outside iommu-ledger, so nothing was changed. ` +
            "Restore the ledger from a copy, or, to rebuild from the events as they are now, run 'iommu-ledger rebuild --accept-broken-chain'",
    );
    this.name = 'BrokenChainError';
  }
}

interface SchemaObject {
  type: 'table' | 'index';
  name: string;
  table: string;
  sql: string;
}

let canonical: SchemaObject[] | undefined;
/** The columns of the projection tables, and of the other tables, as the current schema has them. */
let columns: { projection: Set<string>; other: Set<string>; byTable: Map<string, Set<string>> } | undefined;

/**
 * The projection tables and their indexes exactly as the current schema creates them: every
 * migration run on an empty in-memory database (the same statements a ledger file went through),
 * tables first.
 */
export function projectionSchema(): SchemaObject[] {
  if (canonical) return canonical;
  const mem = openDatabase(':memory:');
  try {
    const rows = mem
      .prepare("SELECT type, name, tbl_name AS \"table\", sql FROM sqlite_master WHERE sql IS NOT NULL AND type IN ('table', 'index')")
      .all() as SchemaObject[];
    const ours = new Set<string>(PROJECTION_TABLES);
    canonical = rows.filter((r) => ours.has(r.table)).sort((a, b) => (a.type === b.type ? 0 : a.type === 'table' ? -1 : 1));
    columns = { projection: new Set(), other: new Set(), byTable: new Map() };
    for (const t of rows.filter((r) => r.type === 'table')) {
      const names = mem.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(t.name) as string[];
      columns.byTable.set(t.name, new Set(names));
      for (const c of names) (ours.has(t.name) ? columns.projection : columns.other).add(c);
    }
  } finally {
    mem.close();
  }
  for (const t of PROJECTION_TABLES)
    if (!canonical.some((o) => o.type === 'table' && o.name === t)) throw new Error(`internal: the schema has no projection table ${t}`);
  return canonical;
}

/**
 * Drops the projection tables given (all of them unless told) and creates each again as the
 * current schema has it, with its indexes (inside the caller's transaction): a table or index that
 * is missing, or whose shape was changed, is back, empty.
 */
export function recreateProjectionTables(db: Database.Database, tables: readonly string[] = PROJECTION_TABLES): void {
  const schema = projectionSchema();
  for (const t of tables) {
    if (!(PROJECTION_TABLES as readonly string[]).includes(t)) throw new Error(`internal: ${t} is not a projection table`);
    db.exec(`DROP TABLE IF EXISTS "${t}"`);
  }
  for (const o of schema) if (tables.includes(o.table)) db.exec(o.sql);
}

/**
 * The projection table, index or column a "no such table/index/column" error of SQLite names, if
 * it is one (a column only when no other table has one of that name).
 */
export function missingProjection(message: string): { kind: 'table' | 'index' | 'column'; name: string } | undefined {
  const m = /^(?:no such (table|index|column): (?:main\.)?|table \w+ has no column named )([\w]+)/.exec(message);
  if (!m) return undefined;
  const name = m[2]!;
  const kind = (m[1] ?? 'column') as 'table' | 'index' | 'column';
  const schema = projectionSchema();
  if (kind === 'column') return columns!.projection.has(name) && !columns!.other.has(name) ? { kind, name } : undefined;
  return schema.some((o) => o.type === kind && o.name === name) ? { kind, name } : undefined;
}

/** The error for a missing projection table, index or column. */
export function missingProjectionError(file: string, what: { kind: 'table' | 'index' | 'column'; name: string }): CorruptProjectionError {
  const schema = projectionSchema();
  // The tables it belongs to: the table itself, an index's table, or those with a column of that name.
  const tables =
    what.kind === 'table'
      ? [what.name]
      : what.kind === 'index'
        ? schema.filter((o) => o.type === 'index' && o.name === what.name).map((o) => o.table)
        : PROJECTION_TABLES.filter((t) => columns!.byTable.get(t)?.has(what.name));
  return new CorruptProjectionError(
    `${file}: the ${what.kind === 'column' ? 'projection column' : what.kind} ${what.name} is missing (part of the projections, not of the events): ${REPAIR} and recreates it${alone(tables)}`,
  );
}
