/**
 * Reading stored event bodies (no zod here: query commands load this without the schemas).
 */
import { LedgerFault } from '../core/errors.js';
import { profileFromDescriptor, type ProfileDescriptor } from '../core/profile.js';

/** A stored event that cannot be read: the file was changed outside iommu-ledger. */
export class CorruptEventError extends LedgerFault {
  readonly exitCode = 1;
  constructor(message: string) {
    super(message);
    this.name = 'CorruptEventError';
  }
}

/** An event's stored body, parsed; `what` names the event in the error when it is not JSON. */
export function parseStored<T>(what: string, data: string): T {
  try {
    return JSON.parse(data) as T;
  } catch (e) {
    throw unfitEvent(what, `its stored body is not valid JSON (${(e as Error).message})`);
  }
}

// ---- the shape of a stored event (checked without zod: the question commands load this) ----
//
// The same rules as the zod schema of stored events (`StoredEventData` in schema.ts, which the
// fold, replay and migrate decode with); a property test holds the two to the same verdicts.

/** Every event type iommu-ledger writes. */
export const EVENT_TYPES = ['domain-created', 'device-attached', 'device-detached', 'map', 'unmap', 'fault', 'domain-destroyed'] as const;
const TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);

/** A stored address or size: what `hex()` writes, `0x` and 1 to 16 lower-case hex digits. */
export const STORED_HEX = /^0x[0-9a-f]{1,16}$/;
export const STORED_HEX_TEXT = '"0x" and 1 to 16 lower-case hex digits';

/** A value, shown short and safely in a message (never by walking it: it may be nested 100,000 deep). */
export function shown(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return v.length > 40 ? `${JSON.stringify(v.slice(0, 40))}…` : JSON.stringify(v);
  return String(v);
}

const isPlain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

type Check = (v: unknown) => string | undefined;
const str =
  (max: number, min = 0): Check =>
  (v) =>
    typeof v !== 'string'
      ? `expected a string, not ${shown(v)}`
      : v.length < min
        ? 'expected a non-empty string'
        : v.length > max
          ? `expected at most ${max} characters, not ${v.length}`
          : undefined;
const hexValue: Check = (v) => (typeof v === 'string' && STORED_HEX.test(v) ? undefined : `expected ${STORED_HEX_TEXT}, not ${shown(v)}`);
const int =
  (min: number, max = Number.MAX_SAFE_INTEGER): Check =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
      ? undefined
      : `expected a whole number from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}, not ${shown(v)}`;
const bool: Check = (v) => (typeof v === 'boolean' ? undefined : `expected true or false, not ${shown(v)}`);
const literal =
  (...values: unknown[]): Check =>
  (v) =>
    values.includes(v) ? undefined : `expected ${values.map((x) => JSON.stringify(x)).join(' or ')}, not ${shown(v)}`;

/** An object with these fields (`?` marks optional ones) and no others. */
function object(fields: Record<string, Check | ObjectCheck>): ObjectCheck {
  const keys = Object.keys(fields).map((k) => ({ key: k.replace(/\?$/, ''), optional: k.endsWith('?'), check: fields[k]! }));
  const known = new Set(keys.map((k) => k.key));
  const check = (v: unknown, path: string): string | undefined => {
    if (!isPlain(v)) return `${path || 'data'}: expected an object, not ${shown(v)}`;
    for (const { key, optional, check: c } of keys) {
      const at = path ? `${path}.${key}` : key;
      const value = v[key];
      if (value === undefined) {
        if (optional) continue;
        return `${at}: missing`;
      }
      if (isObjectCheck(c)) {
        const bad = c(value, at);
        if (bad !== undefined) return bad;
      } else {
        const bad = c(value);
        if (bad !== undefined) return `${at}: ${bad}`;
      }
    }
    for (const k in v) if (!known.has(k)) return `${path || 'data'}: unknown field ${shown(k)}`;
    return undefined;
  };
  return Object.assign(check, { nested: true as const });
}
type ObjectCheck = ((v: unknown, path: string) => string | undefined) & { nested: true };
const isObjectCheck = (c: Check | ObjectCheck): c is ObjectCheck => 'nested' in c;

const WHO = object({ 'caller?': str(200), 'site?': str(500), 'task?': str(200), 'pid?': int(0), 'tgid?': int(0), 'cpu?': int(0) });
const FROM = object({
  'source?': str(4096),
  'digest?': str(200),
  'line?': int(0),
  'derivedFrom?': object({ position: int(1), id: str(200, 1), strategy: str(200) }),
});
const BODIES: Record<string, ObjectCheck> = {
  'domain-created': object({
    profile: object({
      name: str(200, 1),
      pgsizeBitmap: hexValue,
      iovaBits: int(1, 64),
      semantics: literal('legacy', 'split', 'strict', 'refuse-partial', 'iommupt'),
      'base?': str(200, 1),
      'emptyUnmapErrno?': literal('ENOENT'),
    }),
  }),
  map: object({
    iova: hexValue,
    paddr: hexValue,
    size: hexValue,
    prot: int(0, 255),
    ok: bool,
    'errno?': str(64),
    'reason?': str(65536),
    'inferred?': literal('before-trace'),
  }),
  unmap: object({
    iova: hexValue,
    size: hexValue,
    ok: bool,
    'errno?': str(64),
    'reason?': str(65536),
    unmapped: hexValue,
    'predicted?': hexValue,
    'observed?': bool,
    'followed?': literal(true),
  }),
  fault: object({ iova: hexValue, 'device?': str(200), 'driver?': str(200), 'flags?': int(0) }),
  'device-attached': object({ device: str(200, 1), 'groupId?': int(Number.MIN_SAFE_INTEGER) }),
  'device-detached': object({ device: str(200, 1), 'groupId?': int(Number.MIN_SAFE_INTEGER) }),
  'domain-destroyed': object({}),
};
const DATA = Object.fromEntries(Object.entries(BODIES).map(([t, body]) => [t, object({ body, 'who?': WHO, 'from?': FROM })]));

/** What is wrong with a stored event's type and parsed data, as `field: reason`; undefined when it fits. */
export function storedProblem(type: string, data: unknown): string | undefined {
  if (!TYPES.has(type)) return `type ${shown(type)} is not an event type (${EVENT_TYPES.join(', ')})`;
  const bad = DATA[type]!(data, '');
  if (bad !== undefined || type !== 'domain-created') return bad;
  return profileProblem((data as { body: { profile: ProfileDescriptor } }).body.profile);
}

/** What is wrong with the values of a stored profile descriptor whose shape fits (page sizes, width, base). */
export function profileProblem(d: ProfileDescriptor): string | undefined {
  try {
    profileFromDescriptor(d);
    return undefined;
  } catch (e) {
    return `body.profile: ${(e as Error).message}`;
  }
}

/** The names of an event in messages: its position and id. */
export function eventName(position: number, id?: string): string {
  return id === undefined ? `event #${position}` : `event #${position} (id ${id.length > 80 ? `${id.slice(0, 80)}…` : id})`;
}

/** The error for a stored event that does not fit the schema. */
export function unfitEvent(what: string, problem: string): CorruptEventError {
  return new CorruptEventError(
    `${what}: ${problem}: this stored event is not one iommu-ledger writes (the ledger was changed outside it); nothing was written; restore the ledger from a copy ('iommu-ledger verify' checks the hash chain)`,
  );
}
