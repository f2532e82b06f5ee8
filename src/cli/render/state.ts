/** `state`: the heading, the table of runs, the pages as JSON, and the page tables of `--hw`. */
import { formatSize, hex } from '../../core/address.js';
import { formatProt } from '../../events/prot.js';
import { BEFORE_TRACE_CALLER } from '../../events/callers.js';
import type { Queries, StateView } from '../../projections/queries.js';
import type { RunColumns } from '../../projections/runlog.js';
import { table } from './format.js';

type Hardware = ReturnType<Queries['hardware']>;

/** The line above the table: the domain, its profile, the point, and what is mapped. */
export function stateHeading(s: StateView): string {
  const r = s.runs;
  let bytes = 0n;
  for (let i = 0; i < r.n; i++) bytes += BigInt(r.count[i]!) << BigInt(r.shift[i]!);
  const notYet = s.at < s.domain.createdAt ? ` (the domain was created at event #${s.domain.createdAt})` : '';
  return `domain ${s.domain.name} (${s.domain.profile.name}, ${s.domain.profile.semantics} unmap) as of event #${s.at}: ${r.n} run(s), ${formatSize(bytes)} mapped${notYet}`;
}

/** The table of live runs (print it only when there is one: `runs.n`). */
export function stateTable(runs: RunColumns, callerOf: (mapPos: number) => string): string {
  return table(['IOVA', 'END', 'PADDR', 'PAGE', 'COUNT', 'PROT', 'MAPPED BY'], runRows(runs, callerOf), { right: [4] });
}

/** `state --json` without `hardware` (which `--hw` adds). */
export function stateJson(s: StateView, callerOf: (mapPos: number) => string): Record<string, unknown> {
  return {
    domain: s.domain.name,
    profile: s.domain.profile.name,
    at: s.at,
    pages: runJson(s.runs, callerOf),
  };
}

/** `state --hw --json`'s `hardware`. */
export function hwJson(h: Hardware): unknown {
  return { format: h.domain.profile.format.name, ...h.stats, invalidations: h.invalidations };
}

/** `state --hw`: the table per page-table level, the table memory, the IOTLB invalidations. */
export function hwText(h: Hardware): string {
  const f = h.domain.profile.format;
  const lines = [
    `page tables (${f.description}):`,
    table(
      ['LEVEL', 'ENTRY MAPS', 'LEAF ENTRIES', 'TABLES', 'TABLE BYTES'],
      h.stats.levels.map((l, i) => [
        l.name,
        formatSize(1n << BigInt(f.levels[i]!.shift)),
        String(l.entries),
        String(l.tables),
        String(l.tables * l.tableBytes),
      ]),
      { right: [2, 3, 4] },
    ),
    `table memory: ${h.stats.tableMemoryBytes} bytes; ${h.stats.runs} run(s), ${formatSize(h.stats.mappedBytes)} mapped`,
  ];
  if (h.invalidations)
    lines.push(`IOTLB invalidations up to event #${h.invalidations.asOf}: ${h.invalidations.count} range(s), ${formatSize(h.invalidations.bytes)}`);
  return lines.join('\n');
}

/** formatProt, made once per distinct value (a state repeats a few protections many times). */
function protTexts(): (prot: number) => string {
  const texts = new Map<number, string>();
  return (prot) => {
    let t = texts.get(prot);
    if (t === undefined) texts.set(prot, (t = formatProt(prot)));
    return t;
  };
}

/**
 * The `state` table's cells of each run, straight from the columns: IOVA, end, physical address,
 * page size, page count, protection, and the map event with its caller. (A bigint's hex text is
 * quick to make; a double's is not, and page-view objects cost more than the cells themselves.)
 */
export function runRows(c: RunColumns, callerOf: (mapPos: number) => string): string[][] {
  const sizes = new Map<number, string>();
  const protOf = protTexts();
  const rows = new Array<string[]>(c.n);
  for (let i = 0; i < c.n; i++) {
    const shift = c.shift[i]!;
    const count = c.count[i]!;
    const iova = c.iova[i]!;
    let size = sizes.get(shift);
    if (size === undefined) sizes.set(shift, (size = formatSize(1n << BigInt(shift))));
    const mapPos = c.mapPos[i]!;
    const caller = callerOf(mapPos);
    // A mapping inferred to have existed before the trace: its physical address is unknown.
    const paddr = caller === BEFORE_TRACE_CALLER ? '?' : hex(c.paddr[i]!);
    rows[i] = [hex(iova), hex(iova + (BigInt(count) << BigInt(shift))), paddr, size, String(count), protOf(c.prot[i]!), `#${mapPos} ${caller}`];
  }
  return rows;
}

/** `state --json`'s pages, straight from the columns, with addresses and sizes already as "0x" text. */
export function runJson(c: RunColumns, callerOf: (mapPos: number) => string): Array<Record<string, string | number>> {
  const protOf = protTexts();
  const pages = new Array<Record<string, string | number>>(c.n);
  for (let i = 0; i < c.n; i++) {
    const mapPos = c.mapPos[i]!;
    const caller = callerOf(mapPos);
    const page: Record<string, string | number | null> = {
      iova: hex(c.iova[i]!),
      paddr: hex(c.paddr[i]!),
      pageSize: hex(1n << BigInt(c.shift[i]!)),
      count: c.count[i]!,
      prot: protOf(c.prot[i]!),
      mappedBy: mapPos,
      caller,
    };
    if (caller === BEFORE_TRACE_CALLER) {
      page.paddr = null; // unknown: inferred from the unmap that removed it
      page.inferred = 'before-trace';
    }
    pages[i] = page as Record<string, string | number>;
  }
  return pages;
}
