/**
 * Commands (what users and importers ask for) and events (what the ledger stores), as zod
 * schemas. Addresses travel as strings ("0x..." hex, decimal or sizes like "2M") and are
 * bigint inside. Stored event bodies carry addresses as "0x" hex strings.
 */
import { z } from 'zod';
import { AddressError, parseAddress, parseSize } from '../core/address.js';
import { LedgerFault } from '../core/errors.js';
import { formatProt, parseProt } from './prot.js';
import type { ProfileDescriptor } from '../core/profile.js';
import { CustomProfileSpec } from '../core/profile-spec.js';
import { parseStored, profileProblem, STORED_HEX, storedProblem, unfitEvent } from './stored.js';

const num = z.union([z.string(), z.number(), z.bigint()]);

function addr(kind: 'address' | 'size') {
  return num.transform((v, ctx) => {
    try {
      return kind === 'size' ? parseSize(v) : parseAddress(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: e instanceof AddressError ? e.message : String(e) });
      return z.NEVER;
    }
  });
}
const address = addr('address');
const size = addr('size');

export { formatProt, parseProt };

const prot = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseProt(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const domainName = z
  .string()
  .min(1, 'a domain name is needed')
  .max(200)
  .regex(/^[^\s]+$/, 'a domain name has no spaces');

/** Who asked, when and from where: on every command. */
const provenance = {
  caller: z.string().max(200).optional(),
  site: z.string().max(500).optional(),
  task: z.string().max(200).optional(),
  pid: z.number().int().nonnegative().optional(),
  tgid: z.number().int().nonnegative().optional(),
  cpu: z.number().int().nonnegative().optional(),
  /** Source timestamp: ISO 8601, or a trace's seconds-since-boot ("511.102331"). */
  time: z.string().max(64).optional(),
  /** A deterministic id for idempotency; derived from the source when absent. ('@' starts derived ids.) */
  id: z.string().min(1).max(200).regex(/^[^@]/, "an id cannot start with '@' (kept for ids the ledger derives)").optional(),
};

export const DomainCommand = z
  .object({
    op: z.literal('domain'),
    domain: domainName,
    profile: z.string().optional(),
    ...CustomProfileSpec.omit({ name: true, base: true }).shape,
    ...provenance,
  })
  .strict();

export { BEFORE_TRACE_CALLER } from './callers.js';

export const MapCommandSchema = z
  .object({
    op: z.literal('map'),
    domain: domainName,
    iova: address,
    paddr: address,
    size,
    prot: prot.optional(),
    /**
     * Not a command anyone saw: an importer inferred the mapping. 'before-trace': it existed
     * before the trace began (a later unmap's unmapped_size proves it).
     */
    inferred: z.literal('before-trace').optional(),
    ...provenance,
  })
  .strict();

export const UnmapCommandSchema = z
  .object({
    op: z.literal('unmap'),
    domain: domainName,
    iova: address,
    size,
    /** What a trace saw the kernel return (iommu_unmap's result), when imported. */
    observedUnmapped: size.optional(),
    /**
     * With observedUnmapped: the pages follow the profile's prediction instead of the trace (a
     * what-if replay under another behaviour). By default the kernel's report is the authority.
     */
    followPrediction: z.literal(true).optional(),
    ...provenance,
  })
  .strict();

export const FaultCommand = z
  .object({
    op: z.literal('fault'),
    domain: domainName,
    iova: address,
    device: z.string().max(200).optional(),
    driver: z.string().max(200).optional(),
    flags: z.number().int().nonnegative().optional(),
    ...provenance,
  })
  .strict();

export const DeviceCommand = z
  .object({
    op: z.enum(['attach', 'detach']),
    domain: domainName,
    device: z.string().min(1).max(200),
    groupId: z.number().int().optional(),
    ...provenance,
  })
  .strict();

export const DestroyCommand = z.object({ op: z.literal('destroy'), domain: domainName, ...provenance }).strict();

export const Command = z.discriminatedUnion('op', [DomainCommand, MapCommandSchema, UnmapCommandSchema, FaultCommand, DeviceCommand, DestroyCommand]);
export type Command = z.output<typeof Command>;
export type CommandInput = z.input<typeof Command>;

export class CommandError extends LedgerFault {
  readonly exitCode = 2;
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

// ---- a fast path for the commands that come by the million (map, unmap, fault) ----
//
// It accepts only what it can check exactly as the schemas above do and gives exactly their
// output: the keys present in the input, in the schema's shape order (a key given as undefined
// kept as undefined), addresses parsed by the same functions. Anything else (an error, an
// unusual value or object) returns undefined and goes through zod, which gives the same result
// or the same error as without the fast path.

const DOMAIN_NAME = /^[^\s]+$/;
const ID = /^[^@]/;

const isString = (v: unknown, max: number): boolean => typeof v === 'string' && v.length <= max;
const isCount = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isAddressInput = (v: unknown): v is string | number | bigint => typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint';

const PROVENANCE_KEYS = ['caller', 'site', 'task', 'pid', 'tgid', 'cpu', 'time', 'id'];
const MAP_KEYS: ReadonlySet<string> = new Set(['op', 'domain', 'iova', 'paddr', 'size', 'prot', 'inferred', ...PROVENANCE_KEYS]);
const UNMAP_KEYS: ReadonlySet<string> = new Set(['op', 'domain', 'iova', 'size', 'observedUnmapped', 'followPrediction', ...PROVENANCE_KEYS]);
const FAULT_KEYS: ReadonlySet<string> = new Set(['op', 'domain', 'iova', 'device', 'driver', 'flags', ...PROVENANCE_KEYS]);

/** Thrown inside the fast path when it cannot give the schema's result itself. */
class NotFast {}
const NOT_FAST = new NotFast();

/** A required address or size (a thrown error is the schema's error: zod reports it). */
function addressOf(o: Record<string, unknown>, k: string, size: boolean): bigint {
  const v = o[k];
  if (!isAddressInput(v)) throw NOT_FAST;
  return size ? parseSize(v) : parseAddress(v);
}

/** Copies the provenance keys present in o, in shape order. */
function provenanceOf(o: Record<string, unknown>, out: Record<string, unknown>): void {
  let v: unknown;
  if ('caller' in o) {
    if ((v = o.caller) !== undefined && !isString(v, 200)) throw NOT_FAST;
    out.caller = v;
  }
  if ('site' in o) {
    if ((v = o.site) !== undefined && !isString(v, 500)) throw NOT_FAST;
    out.site = v;
  }
  if ('task' in o) {
    if ((v = o.task) !== undefined && !isString(v, 200)) throw NOT_FAST;
    out.task = v;
  }
  if ('pid' in o) {
    if ((v = o.pid) !== undefined && !isCount(v)) throw NOT_FAST;
    out.pid = v;
  }
  if ('tgid' in o) {
    if ((v = o.tgid) !== undefined && !isCount(v)) throw NOT_FAST;
    out.tgid = v;
  }
  if ('cpu' in o) {
    if ((v = o.cpu) !== undefined && !isCount(v)) throw NOT_FAST;
    out.cpu = v;
  }
  if ('time' in o) {
    if ((v = o.time) !== undefined && !isString(v, 64)) throw NOT_FAST;
    out.time = v;
  }
  if ('id' in o) {
    if ((v = o.id) !== undefined && !(typeof v === 'string' && v.length >= 1 && v.length <= 200 && ID.test(v))) throw NOT_FAST;
    out.id = v;
  }
}

function fastCommand(input: unknown): Command | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const proto = Object.getPrototypeOf(input) as unknown;
  if (proto !== Object.prototype && proto !== null) return undefined;
  const o = input as Record<string, unknown>;
  const op = o.op;
  const known = op === 'map' ? MAP_KEYS : op === 'unmap' ? UNMAP_KEYS : op === 'fault' ? FAULT_KEYS : undefined;
  if (known === undefined) return undefined;
  for (const k in o) if (!known.has(k)) return undefined; // zod names the unknown field
  const domain = o.domain;
  if (typeof domain !== 'string' || domain.length > 200 || !DOMAIN_NAME.test(domain)) return undefined;
  try {
    let out: Record<string, unknown>;
    let v: unknown;
    if (op === 'map') {
      out = { op, domain, iova: addressOf(o, 'iova', false), paddr: addressOf(o, 'paddr', false), size: addressOf(o, 'size', true) };
      if ('prot' in o) {
        v = o.prot;
        if (v !== undefined) {
          if (typeof v !== 'string' && typeof v !== 'number') throw NOT_FAST;
          v = parseProt(v);
        }
        out.prot = v;
      }
      if ('inferred' in o) {
        if ((v = o.inferred) !== undefined && v !== 'before-trace') throw NOT_FAST;
        out.inferred = v;
      }
    } else if (op === 'unmap') {
      out = { op, domain, iova: addressOf(o, 'iova', false), size: addressOf(o, 'size', true) };
      if ('observedUnmapped' in o) {
        v = o.observedUnmapped;
        if (v !== undefined) {
          if (!isAddressInput(v)) throw NOT_FAST;
          v = parseSize(v);
        }
        out.observedUnmapped = v;
      }
      if ('followPrediction' in o) {
        if ((v = o.followPrediction) !== undefined && v !== true) throw NOT_FAST;
        out.followPrediction = v;
      }
    } else {
      out = { op, domain, iova: addressOf(o, 'iova', false) };
      if ('device' in o) {
        if ((v = o.device) !== undefined && !isString(v, 200)) throw NOT_FAST;
        out.device = v;
      }
      if ('driver' in o) {
        if ((v = o.driver) !== undefined && !isString(v, 200)) throw NOT_FAST;
        out.driver = v;
      }
      if ('flags' in o) {
        if ((v = o.flags) !== undefined && !isCount(v)) throw NOT_FAST;
        out.flags = v;
      }
    }
    provenanceOf(o, out);
    return out as Command;
  } catch {
    return undefined; // not for the fast path, or an error: zod gives it
  }
}

/** Validates one command; the error names the field and the reason. */
export function parseCommand(input: unknown): Command {
  const fast = fastCommand(input);
  if (fast !== undefined) return fast;
  const r = Command.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const field = issue.path.join('.');
  let message = issue.message;
  if (issue.code === 'invalid_union' && field === 'op') message = 'op must be one of domain, map, unmap, fault, attach, detach, destroy';
  if (issue.code === 'unrecognized_keys') message = `unknown field(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  throw new CommandError(field ? `${field}: ${message}` : message, field || undefined);
}

// ---- stored events ----

export const EVENT_SCHEMA_VERSION = 1;

export type EventType = 'domain-created' | 'device-attached' | 'device-detached' | 'map' | 'unmap' | 'fault' | 'domain-destroyed';

export type { Who, Origin } from './decode.js';
import type { Who, Origin, CheckedData } from './decode.js';

/** Bodies as stored (JSON): addresses as "0x" strings. */
export interface MapBody {
  iova: string;
  paddr: string;
  size: string;
  prot: number;
  ok: boolean;
  errno?: string;
  reason?: string;
  /** An importer's inference, not a traced command (MapCommandSchema.inferred). */
  inferred?: 'before-trace';
}
export interface UnmapBody {
  iova: string;
  size: string;
  ok: boolean;
  errno?: string;
  reason?: string;
  /** What the ledger records as returned: the trace's observation when there is one, else the core's. */
  unmapped: string;
  /** The core's prediction, when it differs from the observation. */
  predicted?: string;
  /** True when `unmapped` is what a trace observed (imports), not the core's prediction. */
  observed?: boolean;
  /**
   * With `predicted`: the pages followed the kernel's report (Domain.unmapObserved). Divergent
   * events stored before this flag existed had their pages follow the prediction, and rebuild
   * keeps them so.
   */
  followed?: true;
}
/**
 * Did the pages follow the trace's observation when this unmap was stored (Domain.unmapObserved),
 * rather than the profile's prediction? Yes for every observed unmap, except divergent ones
 * stored without `followed`: by a what-if replay, or before the flag existed.
 */
export function followsObserved(b: { observed?: boolean; predicted?: unknown; followed?: true }): boolean {
  return b.observed === true && (b.predicted === undefined || b.followed === true);
}

export interface FaultBody {
  iova: string;
  device?: string;
  driver?: string;
  flags?: number;
}
export interface DeviceBody {
  device: string;
  groupId?: number;
}
export interface DomainBody {
  profile: ProfileDescriptor;
}

export type EventBody = MapBody | UnmapBody | FaultBody | DeviceBody | DomainBody | Record<string, never>;

/** The body of a stored event, with its provenance. */
export interface StoredEvent {
  position: number;
  domain: string;
  version: number;
  type: EventType;
  schemaVersion: number;
  id: string;
  recordedAt: string;
  time?: string;
  who: Who;
  from: Origin;
  body: EventBody;
}

/**
 * Upcasters: (type, stored schema version) -> a function to the next version. Reading an event
 * applies them in turn until EVENT_SCHEMA_VERSION. Version 1 is the first, so none exist yet;
 * the registry is the place a schema change adds one.
 */
export const UPCASTERS = new Map<string, (data: Record<string, unknown>) => Record<string, unknown>>();

export function upcast(type: string, version: number, data: Record<string, unknown>): Record<string, unknown> {
  let v = version;
  let d = data;
  while (v < EVENT_SCHEMA_VERSION) {
    const f = UPCASTERS.get(`${type}@${v}`);
    if (!f) throw new Error(`no upcaster for ${type} events of schema version ${v}`);
    d = f(d);
    v++;
  }
  if (v > EVENT_SCHEMA_VERSION) {
    throw new Error(`event ${type} has schema version ${v}, newer than this iommu-ledger understands (${EVENT_SCHEMA_VERSION})`);
  }
  return d;
}

// ---- stored events, read back ----
//
// What iommu-ledger itself writes into `events.data`, by event type. A stored event that does not
// fit (a body that is null, an array or a string, an address that is not "0x" hex, an unknown
// field or event type) was changed outside iommu-ledger: readers refuse it, naming the event,
// instead of computing with it. The question commands check the same rules without zod
// (`storedProblem` in stored.ts); that check is also the fast path here, and zod decides every
// event it refuses (test/reliability/hostile-events.test.ts holds the two to the same verdicts).

const storedHex = z.string().regex(STORED_HEX);
const wholeNumber = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const storedWho = z
  .object({
    caller: z.string().max(200).optional(),
    site: z.string().max(500).optional(),
    task: z.string().max(200).optional(),
    pid: wholeNumber(0).optional(),
    tgid: wholeNumber(0).optional(),
    cpu: wholeNumber(0).optional(),
  })
  .strict();
const storedFrom = z
  .object({
    source: z.string().max(4096).optional(),
    digest: z.string().max(200).optional(),
    line: wholeNumber(0).optional(),
    derivedFrom: z
      .object({ position: wholeNumber(1), id: z.string().min(1).max(200), strategy: z.string().max(200) })
      .strict()
      .optional(),
  })
  .strict();
const storedDevice = z.object({ device: z.string().min(1).max(200), groupId: wholeNumber(Number.MIN_SAFE_INTEGER).optional() }).strict();

/** The stored bodies, by event type. */
export const StoredBody = {
  'domain-created': z
    .object({
      profile: z
        .object({
          name: z.string().min(1).max(200),
          pgsizeBitmap: storedHex,
          iovaBits: wholeNumber(1, 64),
          semantics: z.enum(['legacy', 'split', 'strict', 'refuse-partial', 'iommupt']),
          base: z.string().min(1).max(200).optional(),
          emptyUnmapErrno: z.literal('ENOENT').optional(),
        })
        .strict()
        .superRefine((d, ctx) => {
          const bad = profileProblem(d);
          if (bad !== undefined) ctx.addIssue({ code: 'custom', message: bad.replace(/^body\.profile: /, '') });
        }),
    })
    .strict(),
  map: z
    .object({
      iova: storedHex,
      paddr: storedHex,
      size: storedHex,
      prot: wholeNumber(0, 255),
      ok: z.boolean(),
      errno: z.string().max(64).optional(),
      reason: z.string().max(65536).optional(),
      inferred: z.literal('before-trace').optional(),
    })
    .strict(),
  unmap: z
    .object({
      iova: storedHex,
      size: storedHex,
      ok: z.boolean(),
      errno: z.string().max(64).optional(),
      reason: z.string().max(65536).optional(),
      unmapped: storedHex,
      predicted: storedHex.optional(),
      observed: z.boolean().optional(),
      followed: z.literal(true).optional(),
    })
    .strict(),
  fault: z
    .object({ iova: storedHex, device: z.string().max(200).optional(), driver: z.string().max(200).optional(), flags: wholeNumber(0).optional() })
    .strict(),
  'device-attached': storedDevice,
  'device-detached': storedDevice,
  'domain-destroyed': z.object({}).strict(),
} satisfies Record<EventType, z.ZodType>;

/** `events.data` of each event type: the body, who asked, where it came from. */
export const StoredEventData = Object.fromEntries(
  Object.entries(StoredBody).map(([type, body]) => [type, z.object({ body, who: storedWho.optional(), from: storedFrom.optional() }).strict()]),
) as unknown as Record<EventType, z.ZodType>;

/** A stored event's data as decoded (checked, not yet typed: `decodeBody` in decode.ts types it). */
export type DecodedData = CheckedData;

/**
 * A stored event's data, parsed (when given as text) and checked against its type's schema.
 * Throws CorruptEventError naming the event (`what`, made only then) and what does not fit.
 */
export function decodeStoredEvent(type: string, data: string | unknown, what: () => string): DecodedData {
  let parsed = data;
  if (typeof data === 'string') {
    try {
      parsed = JSON.parse(data);
    } catch {
      parsed = parseStored<unknown>(what(), data); // throws, naming the event
    }
  }
  const problem = storedProblem(type, parsed);
  if (problem === undefined) return parsed as DecodedData;
  // Refused by the fast check: the schema decides, and the check names the field.
  const schema = Object.hasOwn(StoredEventData, type) ? (StoredEventData as Record<string, z.ZodType>)[type] : undefined;
  if (schema) {
    const r = schema.safeParse(parsed);
    if (r.success) return parsed as DecodedData;
  }
  throw unfitEvent(what(), problem);
}
