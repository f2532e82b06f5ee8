/**
 * The one decoder of stored events: `events.data` checked against the schema of stored events
 * (the fast check of stored.ts, no zod, so the question commands can load it) and turned into a
 * discriminated union on `type`, addresses and sizes already bigint. Everything that reads a
 * stored event's body reads it through here (`decodeEvent` for a row, `decodeBody` for a body
 * already checked, as the store's reads and the fold give them).
 */
import type { ProfileDescriptor } from '../core/profile.js';
import { parseStored, storedProblem, unfitEvent, eventName, type EVENT_TYPES } from './stored.js';

export type EventType = (typeof EVENT_TYPES)[number];

/** Who asked for a command (stored as `who`, left out when empty). */
export interface Who {
  caller?: string;
  site?: string;
  task?: string;
  pid?: number;
  tgid?: number;
  cpu?: number;
}

/** Where a stored event came from (stored as `from`). */
export interface Origin {
  /** The source file (name as given) and its SHA-256, and the line, for imports. */
  source?: string;
  digest?: string;
  line?: number;
  /** For a migrated ledger: the source event this one was derived from, and the strategy. */
  derivedFrom?: { position: number; id: string; strategy: string };
}

export interface MapFields {
  iova: bigint;
  paddr: bigint;
  size: bigint;
  prot: number;
  ok: boolean;
  errno?: string;
  reason?: string;
  inferred?: 'before-trace';
}
export interface UnmapFields {
  iova: bigint;
  size: bigint;
  ok: boolean;
  errno?: string;
  reason?: string;
  unmapped: bigint;
  predicted?: bigint;
  observed?: boolean;
  followed?: true;
}
export interface FaultFields {
  iova: bigint;
  device?: string;
  driver?: string;
  flags?: number;
}
export interface DeviceFields {
  device: string;
  groupId?: number;
}
export interface DomainCreatedFields {
  profile: ProfileDescriptor;
}

/** A stored body by its event type, decoded. */
export type DecodedBody =
  | { type: 'map'; body: MapFields }
  | { type: 'unmap'; body: UnmapFields }
  | { type: 'fault'; body: FaultFields }
  | { type: 'device-attached' | 'device-detached'; body: DeviceFields }
  | { type: 'domain-created'; body: DomainCreatedFields }
  | { type: 'domain-destroyed'; body: Record<string, never> };

/** A stored event, decoded: its envelope, who asked, where from, and its typed body. */
export type DecodedEvent = DecodedBody & {
  position: number;
  stream: string;
  version: number;
  id: string;
  time?: string;
  who: Who;
  /** Present for events from `apply`, `import` and `migrate`. */
  from?: Origin;
  /** The body as stored (JSON: addresses as "0x" text), for output that shows it as stored. */
  stored: Record<string, unknown>;
};

/** The data of a stored event as parsed and checked (not yet typed). */
export interface CheckedData {
  body: Record<string, unknown>;
  who?: Who;
  from?: Origin;
}

/**
 * A checked stored body, typed: the addresses and sizes converted once. The body must already
 * have passed the check of stored events (`storedProblem`): this does not check again.
 */
export function decodeBody(type: EventType, b: Record<string, unknown>): DecodedBody {
  switch (type) {
    case 'map': {
      const m: MapFields = {
        iova: BigInt(b.iova as string),
        paddr: BigInt(b.paddr as string),
        size: BigInt(b.size as string),
        prot: b.prot as number,
        ok: b.ok as boolean,
      };
      if (b.errno !== undefined) m.errno = b.errno as string;
      if (b.reason !== undefined) m.reason = b.reason as string;
      if (b.inferred !== undefined) m.inferred = b.inferred as 'before-trace';
      return { type, body: m };
    }
    case 'unmap': {
      const u: UnmapFields = {
        iova: BigInt(b.iova as string),
        size: BigInt(b.size as string),
        ok: b.ok as boolean,
        unmapped: BigInt(b.unmapped as string),
      };
      if (b.errno !== undefined) u.errno = b.errno as string;
      if (b.reason !== undefined) u.reason = b.reason as string;
      if (b.predicted !== undefined) u.predicted = BigInt(b.predicted as string);
      if (b.observed !== undefined) u.observed = b.observed as boolean;
      if (b.followed !== undefined) u.followed = true;
      return { type, body: u };
    }
    case 'fault': {
      const f: FaultFields = { iova: BigInt(b.iova as string) };
      if (b.device !== undefined) f.device = b.device as string;
      if (b.driver !== undefined) f.driver = b.driver as string;
      if (b.flags !== undefined) f.flags = b.flags as number;
      return { type, body: f };
    }
    case 'device-attached':
    case 'device-detached': {
      const d: DeviceFields = { device: b.device as string };
      if (b.groupId !== undefined) d.groupId = b.groupId as number;
      return { type, body: d };
    }
    case 'domain-created':
      return { type, body: { profile: b.profile as ProfileDescriptor } };
    case 'domain-destroyed':
      return { type, body: {} };
  }
}

/** A checked stored event (its envelope and parsed data), typed. */
export function decodeChecked(
  row: { position: number; stream: string; version: number; type: EventType; id: string; time?: string | null },
  data: CheckedData,
): DecodedEvent {
  const ev = decodeBody(row.type, data.body) as DecodedEvent;
  ev.position = row.position;
  ev.stream = row.stream;
  ev.version = row.version;
  ev.id = row.id;
  if (row.time) ev.time = row.time;
  ev.who = data.who ?? {};
  if (data.from !== undefined) ev.from = data.from;
  ev.stored = data.body;
  return ev;
}

/**
 * A stored event row (its `data` as stored, JSON text) decoded: parsed, checked against the
 * schema of stored events, typed. One that does not fit throws CorruptEventError naming the
 * event and the field (`body.iova: expected "0x" and 1 to 16 lower-case hex digits, not …`).
 */
export function decodeEvent(row: {
  position: number;
  stream: string;
  version: number;
  type: string;
  id: string;
  time?: string | null;
  data: string;
}): DecodedEvent {
  const what = eventName(row.position, row.id);
  const parsed = parseStored<unknown>(what, row.data);
  const problem = storedProblem(row.type, parsed);
  if (problem !== undefined) throw unfitEvent(what, problem);
  return decodeChecked(row as typeof row & { type: EventType }, parsed as CheckedData);
}
