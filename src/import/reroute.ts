/**
 * The reroute stage: an import's stored events read back as the trace records they came from,
 * so that the routing (the order, route, infer and spaces stages) can be recomputed with other
 * options (`iommu-ledger reroute`, cli/reroute.ts; docs/import.md, "Recomputing the routing").
 *
 * An imported event keeps nearly the whole record: the map's iova, paddr and size; the unmap's
 * iova, size and the kernel's unmapped_size; the fault's iova, device, driver and flags; an
 * attach's device and group; the task, pid, tgid, CPU, caller and site; the trace time as
 * printed; the file and line. What the route stage derived is dropped and derived again: the
 * domains it created (ids `KEY:domain:NAME`) and the mappings it inferred from before the trace
 * (ids `KEY:LINE:beforeK`). What the trace held and the ledger does not keep cannot come back:
 * the vendor `dev=` field (so `--domain-by dev` cannot be recomputed), the debug lines' page split,
 * records the route stage dropped (a detach of a device never placed), and where a stream paused.
 *
 * Pure: events in, records out; nothing here reads or writes a ledger.
 */
import { LedgerFault } from '../core/errors.js';
import type { DecodedEvent } from '../events/decode.js';
import type { Command } from '../events/schema.js';
import { nanoseconds } from './parse.js';
import type { Emit, StoredRecord } from './spaces.js';

/** A reroute that cannot be done as asked (exit code 2). */
export class RerouteError extends LedgerFault {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'RerouteError';
  }
}

/** A record read back, with its line (its place in the trace) and the event it was read from. */
export interface Reread {
  rec: StoredRecord;
  line: number;
  position: number;
  id: string;
  /** The space the import had put it in. */
  stream: string;
}

/** What one stored event of an import is: a record, or something the route stage derived. */
export type ImportedKind = 'record' | 'space' | 'before-trace';

/**
 * What an event of source `key` (its ids start `KEY:`) is, if an import could have stored it;
 * otherwise why not (the source is then taken as an `apply`'d file and copied as it is).
 */
export function importedKind(ev: DecodedEvent, key: string): ImportedKind | { not: string } {
  const line = ev.from?.line;
  const rest = ev.id.startsWith(`${key}:`) ? ev.id.slice(key.length + 1) : undefined;
  const what = `event #${ev.position} (${ev.type}, id ${ev.id})`;
  if (rest === undefined) return { not: `${what} has an id of its own` };
  switch (ev.type) {
    case 'domain-created':
      return rest === `domain:${ev.stream}` ? 'space' : { not: `${what} was created by a command, not opened by the import` };
    case 'map':
      if (ev.body.inferred === 'before-trace')
        return rest.startsWith(`${line}:before`) ? 'before-trace' : { not: `${what} is inferred under another line's id` };
      break;
    case 'unmap':
      if (ev.body.observed !== true) return { not: `${what} carries no unmapped_size of a trace` };
      break;
    case 'fault':
    case 'device-attached':
    case 'device-detached':
      break;
    default:
      return { not: `${what} is a ${ev.type}, which no import stores` };
  }
  return rest === String(line) ? 'record' : { not: `${what} has an id that is not its line's` };
}

/** The trace record a stored event was made from (an event that importedKind calls a record). */
export function recordOf(ev: DecodedEvent): StoredRecord {
  const rec: StoredRecord = { event: 'map', source: 'ftrace' };
  switch (ev.type) {
    case 'map':
      Object.assign(rec, { event: 'map', iova: ev.body.iova, paddr: ev.body.paddr, size: ev.body.size });
      break;
    case 'unmap':
      Object.assign(rec, { event: 'unmap', iova: ev.body.iova, size: ev.body.size, unmappedSize: ev.body.unmapped });
      break;
    case 'fault':
      rec.event = 'io_page_fault';
      rec.iova = ev.body.iova;
      if (ev.body.device !== undefined) rec.device = ev.body.device;
      if (ev.body.driver !== undefined) rec.driver = ev.body.driver;
      if (ev.body.flags !== undefined) rec.faultFlags = ev.body.flags;
      break;
    case 'device-attached':
    case 'device-detached': {
      const group = ev.body.groupId !== undefined;
      rec.event = ev.type === 'device-attached' ? (group ? 'add_to_group' : 'attach') : group ? 'remove_from_group' : 'detach';
      rec.device = ev.body.device;
      if (group) rec.groupId = ev.body.groupId;
      break;
    }
    default:
      throw new Error(`internal: event #${ev.position} (${ev.type}) is not a trace record`);
  }
  const w = ev.who;
  if (w.task !== undefined) rec.task = w.task;
  if (w.pid !== undefined) rec.pid = w.pid;
  if (w.tgid !== undefined) rec.tgid = w.tgid;
  if (w.cpu !== undefined) rec.cpu = w.cpu;
  if (ev.time !== undefined) {
    rec.timestamp = ev.time;
    // As parse.ts read it: seconds with a fraction (ftrace, printk); a date or a counter has none.
    if (/^\d+(\.\d+)?$/.test(ev.time)) {
      const ns = nanoseconds(ev.time);
      if (ns !== undefined) rec.timestampNs = ns;
    }
  }
  rec.stored = { ...(w.caller !== undefined ? { caller: w.caller } : {}), ...(w.site !== undefined ? { site: w.site } : {}) };
  return rec;
}

/**
 * `--merge A,B[,C...]`: the spaces after the first are one domain with the first. Each list is
 * checked for repeats and cycles; `target` follows the chain (`--merge a,b --merge b,c`: c -> a).
 */
export class Merges {
  private readonly into = new Map<string, string>();

  constructor(lists: readonly string[][]) {
    for (const list of lists) {
      const [a, ...rest] = list;
      if (a === undefined || !rest.length) throw new RerouteError(`--merge ${list.join(',')}: give two or more space names, A,B: B's records go to A`);
      for (const b of rest) {
        if (b === a) throw new RerouteError(`--merge ${list.join(',')}: ${b} is named twice`);
        const had = this.into.get(b);
        if (had !== undefined && had !== a) throw new RerouteError(`--merge: ${b} is merged into both ${had} and ${a}`);
        this.into.set(b, a);
      }
    }
    for (const b of this.into.keys()) this.target(b); // a cycle throws
  }

  get size(): number {
    return this.into.size;
  }

  /** Every name given (merged away, and kept). */
  names(): string[] {
    return [...new Set([...this.into.keys(), ...this.into.values()])];
  }

  /** The spaces merged away. */
  merged(): string[] {
    return [...this.into.keys()];
  }

  target(name: string): string {
    let n = name;
    for (let i = 0; i <= this.into.size; i++) {
      const next = this.into.get(n);
      if (next === undefined) return n;
      n = next;
    }
    throw new RerouteError(`--merge: the merges of ${name} go round in a circle`);
  }

  /**
   * The emit of the spaces stage with the merges applied after routing: a command of a merged
   * space goes to its target; the target is created (once, where the first of them was opened)
   * and the merged space is not. `exists` says whether the ledger has a domain already.
   */
  emit(key: string, exists: (name: string) => boolean, emit: Emit): Emit {
    if (!this.into.size) return emit;
    return (cmd, line) => {
      const to = this.target(cmd.domain);
      if (cmd.op === 'domain') {
        if (exists(to)) return;
        emit((to === cmd.domain ? cmd : { ...cmd, domain: to, id: `${key}:domain:${to}` }) as Command, line);
        return;
      }
      emit((to === cmd.domain ? cmd : { ...cmd, domain: to }) as Command, line);
    };
  }
}
