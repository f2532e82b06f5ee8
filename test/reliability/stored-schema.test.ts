/**
 * The schema of stored events (issue 14 item 7) exists twice: as zod schemas (`StoredEventData`,
 * schema.ts), which the fold, replay and migrate decode with, and as a check without zod
 * (`storedProblem`, stored.ts), which the question commands use (they do not load zod) and which
 * is also the fast path of the decoder. A property test holds the two to the same verdict on
 * stored data made from valid events by random damage, round-tripped through JSON as the file
 * holds it; and the decoder, whatever it is given, either returns or throws CorruptEventError.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeStoredEvent, StoredEventData, type EventType } from '../../src/events/schema.js';
import { CorruptEventError, EVENT_TYPES, storedProblem } from '../../src/events/stored.js';

/** One valid stored data of each type, every optional field present. */
const VALID: Record<EventType, Record<string, unknown>> = {
  'domain-created': {
    body: { profile: { name: 'intel-vtd', pgsizeBitmap: '0x40201000', iovaBits: 48, semantics: 'legacy' } },
    who: { caller: 'c' },
    from: { source: 's.jsonl', digest: 'ab', line: 1 },
  },
  map: {
    body: { iova: '0x200000', paddr: '0x80000000', size: '0x200000', prot: 3, ok: false, errno: 'EEXIST', reason: 'overlaps', inferred: 'before-trace' },
    who: { caller: 'vfio', site: 'x.c:1', task: 't', pid: 1, tgid: 2, cpu: 3 },
    from: { source: 's', digest: 'd', line: 3, derivedFrom: { position: 3, id: 'x:3', strategy: 'copy' } },
  },
  unmap: {
    body: { iova: '0x201000', size: '0x1000', ok: true, errno: 'E', reason: 'r', unmapped: '0x200000', predicted: '0x1000', observed: true, followed: true },
    who: { caller: 'kvm' },
  },
  fault: { body: { iova: '0x202010', device: '0000:00:02.0', driver: 'd', flags: 0 } },
  'device-attached': { body: { device: 'dev', groupId: -1 } },
  'device-detached': { body: { device: 'dev', groupId: 7 } },
  'domain-destroyed': { body: {}, who: { caller: 'x' } },
};

/** Every path to a field of an object (nested objects included), and one unknown key per object. */
function paths(o: Record<string, unknown>, at: string[] = []): string[][] {
  const out: string[][] = [[...at, 'zz_unknown']];
  for (const [k, v] of Object.entries(o)) {
    out.push([...at, k]);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) out.push(...paths(v as Record<string, unknown>, [...at, k]));
  }
  return out;
}

const DELETE = Symbol('delete');
const value = fc.oneof(
  fc.constantFrom<unknown>(
    DELETE,
    null,
    true,
    false,
    0,
    -1,
    1,
    1.5,
    255,
    256,
    64,
    65,
    2 ** 53,
    -(2 ** 53),
    '',
    'x',
    'legacy',
    'split',
    'strict',
    'ENOENT',
    'before-trace',
  ),
  fc.constantFrom(
    '0x0',
    '0x1000',
    '0xFFFF',
    '0xzz',
    '-0x1000',
    '0x',
    '0x10000000000000000',
    '0xffffffffffffffff',
    '4096',
    ' 0x1000',
    '0x1_000',
    '0x0000000000000001',
  ),
  fc.jsonValue({ maxDepth: 2 }),
  fc.string({ minLength: 195, maxLength: 205 }),
  fc.string({ minLength: 60, maxLength: 70 }),
  fc.integer({ min: -300, max: 300 }),
);

function mutate(data: Record<string, unknown>, path: string[], v: unknown): void {
  let o = data as Record<string, unknown>;
  for (const k of path.slice(0, -1)) {
    const next = o[k];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) return;
    o = next as Record<string, unknown>;
  }
  const last = path[path.length - 1]!;
  if (v === DELETE) delete o[last];
  else o[last] = v;
}

const damaged = fc
  .constantFrom(...EVENT_TYPES)
  .chain((type) =>
    fc.record({
      type: fc.constant(type),
      edits: fc.array(fc.tuple(fc.constantFrom(...paths(VALID[type])), value), { minLength: 0, maxLength: 3 }),
      asType: fc.oneof(fc.constant(type), fc.constantFrom(...EVENT_TYPES)),
    }),
  )
  .map(({ type, edits, asType }) => {
    const d = structuredClone(VALID[type]);
    for (const [p, v] of edits) mutate(d, p, v);
    return { type: asType, data: JSON.parse(JSON.stringify(d)) as unknown };
  });

describe('the two checks of stored events agree (issue 14 item 7)', () => {
  it('every valid sample passes both', () => {
    for (const t of EVENT_TYPES) {
      expect(storedProblem(t, VALID[t])).toBeUndefined();
      expect(StoredEventData[t].safeParse(VALID[t]).success).toBe(true);
    }
  });

  it('damaged stored data: zod and the check without zod give the same verdict; the decoder returns or names the event', () => {
    fc.assert(
      fc.property(damaged, ({ type, data }) => {
        const light = storedProblem(type, data) === undefined;
        const zod = StoredEventData[type as EventType].safeParse(data).success;
        expect({ type, data, light }).toEqual({ type, data, light: zod });
        try {
          decodeStoredEvent(type, JSON.stringify(data), () => 'event #9 (id x:9)');
          expect(light).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(CorruptEventError);
          expect((e as Error).message).toMatch(/^event #9 \(id x:9\): .+: this stored event is not one iommu-ledger writes/);
          expect(light).toBe(false);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('any event type or text: the decoder never throws anything but CorruptEventError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.constantFrom(...EVENT_TYPES)), fc.oneof(fc.string(), fc.json()), (type, text) => {
        try {
          decodeStoredEvent(type, text, () => 'event #1 (id a)');
        } catch (e) {
          expect(e).toBeInstanceOf(CorruptEventError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
