/**
 * The compact events row (schema 9, events/compact.ts): an event's id and origin are left out of
 * its row only where `stored_events` makes again exactly the text the hash chain covers.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import Database from 'better-sqlite3';
import { Ledger, type Input } from '../../src/projections/ledger.js';
import { parseCommand, type Origin } from '../../src/events/schema.js';
import { compactRow, importedId, importedIdParts } from '../../src/events/compact.js';
import { tempDb } from './helpers.js';

const DIGEST_A = 'a'.repeat(8) + '0123456789abcdef'.repeat(3) + 'b'.repeat(8);
const DIGEST_B = DIGEST_A.slice(0, 24) + 'f'.repeat(40); // the same key (24 digits), another file

/** What the ledger stored before schema 9 for an event: its data text, with `from` last. */
function wholeData(body: string, who: Record<string, unknown> | undefined, from: Origin | undefined): string {
  const data: Record<string, unknown> = { body: JSON.parse(body) as unknown };
  if (who && Object.keys(who).length) data.who = who;
  if (from) data.from = from;
  return JSON.stringify(data);
}

interface Row {
  position: number;
  event_id: string;
  data: string;
  stored_id: string;
  stored_data: string;
  origin: number | null;
}

function rows(path: string): Row[] {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare(
        `SELECT v.position, v.event_id, v.data, e.event_id AS stored_id, e.data AS stored_data, e.origin
           FROM stored_events v JOIN events e ON e.position = v.position ORDER BY v.position`,
      )
      .all() as Row[];
  } finally {
    db.close();
  }
}

const name = fc.oneof(
  fc.constantFrom('trace.txt', 'boot log.txt', '<stdin>', 'dir/t.dat', 'quote"d.txt', 'back\\slash', 'tab\there', 'ünï.txt', '😀.trace', ''),
  fc.string({ maxLength: 12 }),
);
const origin: fc.Arbitrary<Origin | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.record({ source: name, digest: fc.constantFrom(DIGEST_A, DIGEST_B), line: fc.nat({ max: 10_000_000 }) }),
  // other shapes stay whole: another member order, a missing line, a migrated event's origin
  fc.record({ digest: fc.constantFrom(DIGEST_A), source: name, line: fc.nat() }).map((o) => ({ digest: o.digest, source: o.source, line: o.line })),
  fc.record({ source: name, digest: fc.constantFrom(DIGEST_A) }),
  fc.record({ derivedFrom: fc.record({ position: fc.nat(), id: fc.constantFrom('x', '@d:1'), strategy: fc.constantFrom('coalesce') }) }),
);

describe('the compact events row (schema 9)', () => {
  it('an origin is taken out only with a digest of 64 hex digits and a plain name, whatever came before (first: the memory of the last plain name starts empty)', () => {
    const row = (source: string, digest: string) => compactRow({ stream: 'd', version: 1, id: 'x', data: '{"body":{}}', from: { source, digest, line: 1 } });
    for (const [source, digest, out] of [
      ['', '', false],
      ['t.txt', DIGEST_A, true],
      ['', '', false],
      ['t.txt', DIGEST_A.toUpperCase(), false],
      ['t.txt', DIGEST_A.slice(1), false],
      ['t\u0000.txt', DIGEST_A, false],
      ['', DIGEST_A, true],
    ] as const) {
      const r = row(source, digest);
      expect(r.origin !== null).toBe(out);
      expect(r.hashed).toBe(JSON.stringify({ body: {}, from: { source, digest, line: 1 } }));
    }
  });

  it('stored_events gives back exactly the id and data the chain covers, whatever the origin and id; verify says intact', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ from: origin, id: fc.oneof(fc.constant(undefined), fc.constantFrom('given-1', 'x:y'), fc.constant('line-id')) }), {
          minLength: 1,
          maxLength: 12,
        }),
        (evs) => {
          const path = tempDb();
          const l = new Ledger(path);
          const inputs: Input[] = [{ cmd: parseCommand({ op: 'domain', domain: 'd0', profile: 'intel-vtd' }) }];
          const used = new Set<string>();
          evs.forEach((e, i) => {
            // 'line-id': an explicit id of the imported form (KEY:LINE) that is not its own line's
            const id = e.id === 'line-id' ? `${DIGEST_A.slice(0, 24)}:${90_000_000 + i}` : e.id === undefined ? undefined : `${e.id}-${i}`;
            const cmd = parseCommand({
              op: 'map',
              domain: 'd0',
              iova: `0x${(0x100000 + i * 0x1000).toString(16)}`,
              paddr: '0x1000',
              size: '4K',
              caller: 'c',
              ...(id ? { id } : {}),
            });
            const key = e.from?.digest && e.from.line !== undefined ? `${e.from.digest.slice(0, 24)}:${e.from.line}` : undefined;
            // Two events of one line are one event: the second is a duplicate (tested below), not stored.
            if (key !== undefined && used.has(key) && id === undefined) return;
            if (key !== undefined) used.add(key);
            inputs.push(e.from ? { cmd, from: e.from } : { cmd });
          });
          l.append(inputs);
          expect(l.store.verify().ok).toBe(true);
          l.close();
          const got = rows(path);
          expect(got).toHaveLength(inputs.length);
          for (const [i, inp] of inputs.entries()) {
            const r = got[i]!;
            const expectId =
              inp.cmd.id ?? (inp.from?.digest && inp.from.line !== undefined ? `${inp.from.digest.slice(0, 24)}:${inp.from.line}` : `@d0:${i + 1}`);
            expect(r.event_id).toBe(expectId);
            const body = JSON.parse(r.data) as { body: unknown; who?: Record<string, unknown> };
            expect(r.data).toBe(wholeData(JSON.stringify(body.body), body.who, inp.from));
            // Taken out of the row only when made again exactly: a plain name, the three members in order.
            const plain =
              inp.from !== undefined && Object.keys(inp.from).join() === 'source,digest,line' && /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/.test(inp.from.source!);
            expect(r.origin !== null).toBe(plain);
            if (plain) expect(r.stored_data.length).toBeLessThan(r.data.length);
            else expect(r.stored_data).toBe(r.data);
            expect(r.stored_id === '').toBe(inp.cmd.id === undefined && (plain || inp.from === undefined || !(inp.from.digest && inp.from.line !== undefined)));
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('an id is taken for a line id (KEY:LINE) exactly when the ledger could have made it', () => {
    fc.assert(
      fc.property(fc.constantFrom(DIGEST_A, DIGEST_B), fc.nat({ max: Number.MAX_SAFE_INTEGER }), (digest, line) => {
        expect(importedIdParts(importedId(digest, line))).toEqual({ key: digest.slice(0, 24), line });
      }),
    );
    const key = DIGEST_A.slice(0, 24);
    for (const id of [`${key}:07`, `${key}:-1`, `${key}:1e3`, `${key}:1.5`, `${key}: 1`, `${key}:`, `${key}:9007199254740993`, `${key}:1:before0`]) {
      expect(importedIdParts(id)).toBeUndefined();
    }
    for (const id of [`${key.toUpperCase()}:1`, `${key.slice(1)}g:1`, `head-8ebedd8a7c9a80ee130:7`, '@d0:1', 'given-1'])
      expect(importedIdParts(id)).toBeUndefined();
  });

  it('an imported line stored compact is found by its id: the same line again is a duplicate, in the same and in a later transaction', () => {
    const path = tempDb();
    const l = new Ledger(path);
    const from = (line: number, source = 'trace.txt', digest = DIGEST_A): Origin => ({ source, digest, line });
    const map = (i: number) => parseCommand({ op: 'map', domain: 'd0', iova: `0x${(0x100000 + i * 0x1000).toString(16)}`, paddr: '0x1000', size: '4K' });
    const first = l.append([
      { cmd: parseCommand({ op: 'domain', domain: 'd0', profile: 'intel-vtd' }) },
      { cmd: map(1), from: from(7) },
      { cmd: map(2), from: from(7) },
    ]);
    expect(first.map((o) => o.duplicate ?? false)).toEqual([false, false, true]);
    // Later: the same key under another name or digest (same 24 digits) is the same id.
    const again = l.append([
      { cmd: map(3), from: from(7, 'renamed.txt') },
      { cmd: map(4), from: from(7, 'trace.txt', DIGEST_B) },
      { cmd: map(5), from: from(8) },
    ]);
    expect(again.map((o) => o.duplicate ?? false)).toEqual([true, true, false]);
    // A file whose name JSON escapes keeps its origin, and ids, whole: its lines are found by id,
    // in the transaction that stored them (after the key was asked about) and in a later one.
    const quoted = (line: number): Origin => ({ source: 'quote"d.txt', digest: DIGEST_B.slice(0, 40) + 'e'.repeat(24), line });
    const whole = l.append([
      { cmd: map(6), from: quoted(1) },
      { cmd: map(7), from: quoted(2) },
      { cmd: map(8), from: quoted(2) },
    ]);
    expect(whole.map((o) => o.duplicate ?? false)).toEqual([false, false, true]);
    expect(l.append([{ cmd: map(9), from: quoted(1) }]).map((o) => o.duplicate ?? false)).toEqual([true]);
    expect(l.db.prepare("SELECT count(*) FROM events WHERE event_id <> '' AND origin IS NULL AND event_id NOT LIKE '@%'").pluck().get()).toBe(2);
    expect(l.store.positionOf(`${DIGEST_A.slice(0, 24)}:8`)).toBe(3);
    expect(l.store.positionOf(`${DIGEST_A.slice(0, 24)}:9`)).toBeUndefined();
    l.close();
  });

  it("a line is looked up only up to the last line stored from its file, which each writer keeps as it appends and reads again after another's commit or a rollback", () => {
    const path = tempDb();
    const a = new Ledger(path);
    const b = new Ledger(path);
    const from = (line: number): Origin => ({ source: 'trace.txt', digest: DIGEST_A, line });
    const map = (i: number) => parseCommand({ op: 'map', domain: 'd0', iova: `0x${(0x100000 + i * 0x1000).toString(16)}`, paddr: '0x1000', size: '4K' });
    const dup = (outs: Array<{ duplicate?: boolean }>) => outs.map((o) => o.duplicate ?? false);
    a.appendRaw([{ op: 'domain', domain: 'd0', profile: 'intel-vtd' }]);
    // Lines out of order, then again: each one stored is found, whether below or above the others.
    expect(dup(a.append([5, 2, 9, 2, 9, 5].map((line, i) => ({ cmd: map(i), from: from(line) }))))).toEqual([false, false, false, true, true, true]);
    expect(dup(a.append([3, 9, 10, 10].map((line, i) => ({ cmd: map(10 + i), from: from(line) }))))).toEqual([false, true, false, true]);
    // Another connection stores lines past what `a` has seen: `a` finds them in its next transaction.
    expect(dup(b.append([11, 12].map((line, i) => ({ cmd: map(20 + i), from: from(line) }))))).toEqual([false, false]);
    expect(dup(a.append([12, 13, 11].map((line, i) => ({ cmd: map(30 + i), from: from(line) }))))).toEqual([true, false, true]);
    // A rolled-back transaction's lines are not stored: the same lines later are new.
    expect(() =>
      a.append([{ cmd: map(40), from: from(20) }, { cmd: parseCommand({ op: 'map', domain: 'nope', iova: '0x0', paddr: '0x0', size: '4K' }) }]),
    ).toThrow(/nope/);
    expect(dup(a.append([{ cmd: map(41), from: from(20) }]))).toEqual([false]);
    expect(a.db.prepare('SELECT line FROM events WHERE origin IS NOT NULL ORDER BY position').pluck().all()).toEqual([5, 2, 9, 3, 10, 11, 12, 13, 20]);
    expect(a.store.verify().ok).toBe(true);
    a.close();
    b.close();
  });

  it('a rolled-back transaction takes its new origin away, and the next one makes it again (no row naming a missing origin)', () => {
    const path = tempDb();
    const l = new Ledger(path);
    l.appendRaw([{ op: 'domain', domain: 'd0', profile: 'intel-vtd' }]);
    const map = parseCommand({ op: 'map', domain: 'd0', iova: '0x100000', paddr: '0x1000', size: '4K' });
    expect(() =>
      l.append([
        { cmd: map, from: { source: 'a.txt', digest: DIGEST_A, line: 1 } },
        { cmd: parseCommand({ op: 'map', domain: 'nope', iova: '0x0', paddr: '0x0', size: '4K' }) },
      ]),
    ).toThrow(/nope/);
    l.append([{ cmd: map, from: { source: 'a.txt', digest: DIGEST_A, line: 1 } }]);
    expect(l.store.verify().ok).toBe(true);
    l.close();
    const r = rows(path);
    expect(r.map((x) => x.event_id)).toEqual(['@d0:1', `${DIGEST_A.slice(0, 24)}:1`]);
    expect(r[1]!.origin).not.toBeNull();
    expect(JSON.parse(r[1]!.data).from).toEqual({ source: 'a.txt', digest: DIGEST_A, line: 1 });
  });
});
