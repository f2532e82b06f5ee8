/**
 * The one decoder of stored events (src/events/decode.ts): each event type decodes to its typed
 * shape (addresses and sizes as bigint, optional fields only when stored), and a body that does
 * not fit the schema of stored events is refused, naming the event and the field.
 */
import { describe, expect, it } from 'vitest';
import { decodeEvent, type DecodedEvent } from '../../src/events/decode.js';
import { CorruptEventError } from '../../src/events/stored.js';

const row = (type: string, data: unknown, extra: { time?: string | null } = {}) => ({
  position: 7,
  stream: 'gpu0',
  version: 3,
  type,
  id: 'abc:7',
  data: JSON.stringify(data),
  ...extra,
});

describe('decodeEvent', () => {
  it('decodes a map, addresses as bigint, with its envelope, who and from', () => {
    const ev = decodeEvent(
      row(
        'map',
        {
          body: { iova: '0x200000', paddr: '0x80000000', size: '0x200000', prot: 3, ok: true, inferred: 'before-trace' },
          who: { caller: 'vfio', site: 'a.c:1', tgid: 4 },
          from: { source: 's.jsonl', digest: 'ab', line: 3 },
        },
        { time: '511.1' },
      ),
    );
    expect(ev).toEqual({
      type: 'map',
      body: { iova: 0x200000n, paddr: 0x80000000n, size: 0x200000n, prot: 3, ok: true, inferred: 'before-trace' },
      position: 7,
      stream: 'gpu0',
      version: 3,
      id: 'abc:7',
      time: '511.1',
      who: { caller: 'vfio', site: 'a.c:1', tgid: 4 },
      from: { source: 's.jsonl', digest: 'ab', line: 3 },
      stored: { iova: '0x200000', paddr: '0x80000000', size: '0x200000', prot: 3, ok: true, inferred: 'before-trace' },
    } satisfies DecodedEvent);
  });

  it('decodes a refused map with its errno; who is empty and from absent when not stored', () => {
    const ev = decodeEvent(row('map', { body: { iova: '0x1000', paddr: '0x0', size: '0x1000', prot: 1, ok: false, errno: 'EEXIST' } }));
    expect(ev.type).toBe('map');
    expect(ev.body).toEqual({ iova: 0x1000n, paddr: 0n, size: 0x1000n, prot: 1, ok: false, errno: 'EEXIST' });
    expect(ev.who).toEqual({});
    expect('from' in ev).toBe(false);
    expect('time' in ev).toBe(false);
  });

  it('decodes an unmap, its observed, predicted and followed fields', () => {
    const ev = decodeEvent(
      row('unmap', { body: { iova: '0x1000', size: '0x1000', ok: true, unmapped: '0x200000', predicted: '0x1000', observed: true, followed: true } }),
    );
    expect(ev.type).toBe('unmap');
    expect(ev.body).toEqual({ iova: 0x1000n, size: 0x1000n, ok: true, unmapped: 0x200000n, predicted: 0x1000n, observed: true, followed: true });
    const plain = decodeEvent(row('unmap', { body: { iova: '0x1000', size: '0x1000', ok: false, errno: 'ENOENT', unmapped: '0x0' } }));
    expect(plain.body).toEqual({ iova: 0x1000n, size: 0x1000n, ok: false, errno: 'ENOENT', unmapped: 0n });
  });

  it('decodes a fault, device events, domain-created and domain-destroyed', () => {
    expect(decodeEvent(row('fault', { body: { iova: '0xdead000', device: '0000:01:00.0', driver: 'nvme', flags: 2 } })).body).toEqual({
      iova: 0xdead000n,
      device: '0000:01:00.0',
      driver: 'nvme',
      flags: 2,
    });
    expect(decodeEvent(row('fault', { body: { iova: '0x0' } })).body).toEqual({ iova: 0n });
    const at = decodeEvent(row('device-attached', { body: { device: 'gpu', groupId: 5 } }));
    expect([at.type, at.body]).toEqual(['device-attached', { device: 'gpu', groupId: 5 }]);
    const de = decodeEvent(row('device-detached', { body: { device: 'gpu' } }));
    expect([de.type, de.body]).toEqual(['device-detached', { device: 'gpu' }]);
    const profile = { name: 'intel-vtd', pgsizeBitmap: '0x40201000', iovaBits: 48, semantics: 'legacy' };
    const dc = decodeEvent(row('domain-created', { body: { profile } }));
    expect(dc.type).toBe('domain-created');
    if (dc.type === 'domain-created') expect(dc.body.profile).toEqual(profile);
    const dd = decodeEvent(row('domain-destroyed', { body: {} }));
    expect([dd.type, dd.body]).toEqual(['domain-destroyed', {}]);
  });

  it('narrows on type: the fields of one event type only', () => {
    const ev = decodeEvent(row('unmap', { body: { iova: '0x1000', size: '0x2000', ok: true, unmapped: '0x2000' } }));
    if (ev.type !== 'unmap') throw new Error('not an unmap');
    const end: bigint = ev.body.iova + ev.body.size;
    expect(end).toBe(0x3000n);
  });

  const refused: Array<[string, string, unknown, RegExp]> = [
    ['an address that is not hex', 'map', { body: { iova: '4096', paddr: '0x0', size: '0x1000', prot: 3, ok: true } }, /body\.iova: expected "0x"/],
    ['a missing field', 'unmap', { body: { iova: '0x1000', size: '0x1000', ok: true } }, /body\.unmapped: missing/],
    ['a field of the wrong type', 'map', { body: { iova: '0x0', paddr: '0x0', size: '0x1000', prot: 3, ok: 'yes' } }, /body\.ok: expected true or false/],
    ['an unknown field', 'fault', { body: { iova: '0x0', colour: 'red' } }, /body: unknown field "colour"/],
    ['a bad who', 'domain-destroyed', { body: {}, who: { pid: -1 } }, /who\.pid: expected a whole number/],
    ['a body that is not an object', 'domain-destroyed', { body: null }, /body: expected an object, not null/],
    ['an unknown event type', 'remap', { body: {} }, /type "remap" is not an event type/],
  ];
  for (const [what, type, data, message] of refused) {
    it(`refuses ${what}, naming the event and the field`, () => {
      const decode = () => decodeEvent(row(type, data));
      expect(decode).toThrow(CorruptEventError);
      expect(decode).toThrow(message);
      expect(decode).toThrow(/^event #7 \(id abc:7\): /);
    });
  }

  it('refuses data that is not JSON, naming the event', () => {
    expect(() => decodeEvent({ ...row('map', {}), data: '{"body":' })).toThrow(/^event #7 \(id abc:7\): its stored body is not valid JSON/);
  });
});
