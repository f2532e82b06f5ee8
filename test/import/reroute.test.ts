/**
 * `reroute` (src/cli/reroute.ts, src/import/reroute.ts): the routing of a ledger's imports
 * recomputed from the stored events. With the options of the import, the new ledger must be the
 * import's, event for event (same positions, ids, domains, bodies, provenance; only
 * `from.derivedFrom` is added) and projection for projection; with `--domain X`, the ledger that
 * `import --domain X` makes; with `--merge`, the same routing with the merged spaces' records in
 * the kept one. Real SQLite files throughout.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyFile } from '../../src/cli/apply.js';
import { rerouteLedger, type RerouteOptions } from '../../src/cli/reroute.js';
import { EventStore } from '../../src/events/store.js';
import { importTrace, SKEW_US, type ImportOptions } from '../../src/import/store.js';
import { Ledger } from '../../src/projections/ledger.js';
import { loadQueryBuilder, Queries } from '../../src/projections/queries.js';
import { cli, EX } from '../cli/helpers.js';
import { projectionSnapshot, tempDb } from '../ledger/helpers.js';
import { traceArb, type GeneratedTrace, type TraceOptions } from './gen/index.js';

const RUNS = Number(process.env.PROP_RUNS ?? 10);
/** The extracts of ../shared/repro/*.trace, as the repository keeps them (it must not depend on that folder). */
const REPRO = join(__dirname, '..', 'fixtures', 'real');
const REPRO_TRACES = ['fl.trace', 'md.trace', 'tie.trace'];

/** Every event as stored, minus what a reroute adds (from.derivedFrom) and the wall-clock time of recording. */
function events(db: string): unknown[] {
  const s = new EventStore(db, { readonly: true });
  try {
    return [...s.events()].map((e) => {
      const { derivedFrom: _, ...from } = e.from ?? {};
      return { position: e.position, stream: e.stream, type: e.type, id: e.id, time: e.time, who: e.who, from, body: e.stored };
    });
  } finally {
    s.close();
  }
}

/** What the questions answer: domains, findings, faults, callers, and each domain's state at the end. */
function answers(db: string): unknown {
  const q = new Queries(db, { readonly: true });
  try {
    const last = q.lastPosition;
    // The wall-clock time of recording, and what a reroute adds to provenance, differ by nature.
    const json = (x: unknown) =>
      JSON.parse(
        JSON.stringify(x, (k, v: unknown) => (k === 'recordedAt' || k === 'derivedFrom' ? undefined : typeof v === 'bigint' ? `0x${v.toString(16)}` : v)),
      ) as unknown;
    return json({
      domains: q.domains().map((d) => ({ name: d.name, profile: d.profile.name, semantics: d.profile.semantics, version: d.version, createdAt: d.createdAt })),
      findings: q.findings(),
      faults: q.faults(),
      callers: q.callers(),
      states: q.domains().map((d) => (last > 0 ? q.history(d.name, 0n, 1n << 48n).events : [])),
      refused: q.refusedCommands(),
    });
  } finally {
    q.close();
  }
}

function projections(db: string): unknown {
  const raw = new Database(db, { readonly: true });
  try {
    return projectionSnapshot(raw);
  } finally {
    raw.close();
  }
}

/** The two ledgers are the same history: events, projections and answers. */
function expectSameLedger(a: string, b: string): void {
  expect(events(b)).toEqual(events(a));
  expect(projections(b)).toEqual(projections(a));
  expect(answers(b)).toEqual(answers(a));
}

async function importInto(db: string, file: string, o: ImportOptions): Promise<void> {
  const l = new Ledger(db);
  try {
    await importTrace(l, file, o);
  } finally {
    l.close();
  }
}

function traceFile(t: GeneratedTrace): string {
  const file = join(dirname(tempDb()), 'gen.trace');
  writeFileSync(file, t.text);
  return file;
}

const profileOf = (t: GeneratedTrace) => t.truth.domains[0]?.profile ?? 'intel-vtd';

async function reroute(db: string, o: Omit<RerouteOptions, 'out'> = {}): Promise<{ out: string; r: Awaited<ReturnType<typeof rerouteLedger>> }> {
  const out = join(dirname(db), `re-${Math.random().toString(36).slice(2)}.db`);
  const r = await rerouteLedger(db, { out, ...o });
  return { out, r };
}

const families: Array<{ name: string; opts: TraceOptions; skewUs: number }> = [
  { name: 'up to 4 domains, ties, mid-stream starts, VFIO', opts: {}, skewUs: SKEW_US },
  { name: 'clock skew between CPUs up to 10 µs', opts: { skewUs: 10 }, skewUs: SKEW_US },
  { name: 'the same, ordered with --skew 0', opts: { skewUs: 10 }, skewUs: 0 },
  { name: 'the floppy 1:1 map beside VFIO, boot-time', opts: { floppy: true, preTrace: false }, skewUs: SKEW_US },
];

describe('reroute with the options of the import gives the import', () => {
  for (const f of families) {
    it(`generated traces: ${f.name}`, async () => {
      await loadQueryBuilder();
      await fc.assert(
        fc.asyncProperty(traceArb(f.opts), async (t) => {
          const file = traceFile(t);
          const db = join(dirname(file), 'orig.db');
          await importInto(db, file, { profile: profileOf(t), skewUs: f.skewUs });
          const { out, r } = await reroute(db, { skew: String(f.skewUs) });
          expectSameLedger(db, out);
          expect(r.moved).toBe(0);
          expect(r.after).toEqual(r.before);
        }),
        { numRuns: RUNS, endOnFailure: process.env.PROP_NO_SHRINK !== undefined },
      );
    }, 120_000);
  }

  it('every extract in ../shared/repro/*.trace, with the profile inferred', async () => {
    const traces = REPRO_TRACES;
    expect(traces.length).toBeGreaterThan(0);
    for (const n of traces) {
      const db = tempDb();
      await importInto(db, join(REPRO, n), {});
      const { out, r } = await reroute(db);
      expectSameLedger(db, out);
      expect(r.sources.map((s) => s.name)).toEqual([n]);
      // Each new event names the event it was derived from.
      const s = new EventStore(out, { readonly: true });
      const o = new EventStore(db, { readonly: true });
      for (const e of s.events()) {
        if (e.type === 'domain-created' || (e.type === 'map' && e.body.inferred)) continue;
        expect(e.from?.derivedFrom).toEqual({ position: e.position, id: e.id, strategy: 'reroute' });
      }
      expect(s.lastPosition).toBe(o.lastPosition);
      s.close();
      o.close();
    }
  });

  it('several imports and applied files: each import rerouted in its place, applied commands copied in theirs', async () => {
    const db = tempDb();
    const l = new Ledger(db);
    await applyFile(l, join(EX, 'scenario.jsonl'));
    await importTrace(l, join(EX, 'omap-2011.trace'), {});
    await importTrace(l, join(EX, 'vfio-intel.trace'), { profile: 'intel-vtd' });
    await importTrace(l, join(REPRO, 'md.trace'), {});
    const extra = join(dirname(db), 'later.jsonl');
    writeFileSync(extra, `${JSON.stringify({ op: 'map', domain: 'as1', iova: '0x40000000', paddr: '0x80000000', size: '4K', caller: 'late' })}\n`);
    await applyFile(l, extra);
    l.close();
    const { out, r } = await reroute(db);
    expectSameLedger(db, out);
    expect(r.sources.length).toBe(3);
    expect(r.copied).toBeGreaterThan(0);
    expect(r.copiedWhy).toContain('scenario.jsonl');
  });
});

describe('reroute --domain X equals import --domain X', () => {
  it('every repro extract', async () => {
    for (const n of REPRO_TRACES) {
      const one = tempDb();
      await importInto(one, join(REPRO, n), { domain: 'vm0' });
      const many = tempDb();
      await importInto(many, join(REPRO, n), {});
      const { out, r } = await reroute(many, { domain: 'vm0' });
      expectSameLedger(one, out);
      expect(r.after.spaces.map((s) => s.name)).toEqual(['vm0']);
    }
  });

  it('generated multi-domain traces', async () => {
    await loadQueryBuilder();
    await fc.assert(
      fc.asyncProperty(traceArb({}), async (t) => {
        const file = traceFile(t);
        const one = join(dirname(file), 'one.db');
        const many = join(dirname(file), 'many.db');
        await importInto(one, file, { profile: profileOf(t), domain: 'all' });
        await importInto(many, file, { profile: profileOf(t) });
        const { out } = await reroute(many, { domain: 'all' });
        expectSameLedger(one, out);
      }),
      { numRuns: RUNS, endOnFailure: process.env.PROP_NO_SHRINK !== undefined },
    );
  }, 120_000);
});

describe('reroute --merge', () => {
  it('md.trace: as2 merged into as1; the routing is the same, its records land in as1', async () => {
    const db = tempDb();
    await importInto(db, join(REPRO, 'md.trace'), {});
    const { out, r } = await reroute(db, { merge: ['as1,as2'] });
    expect(r.after.spaces.map((s) => s.name)).toEqual(['as1']);
    const before = events(db) as Array<{ id: string; stream: string; type: string }>;
    const after = events(out) as Array<{ id: string; stream: string; type: string }>;
    const moved = before.filter((e) => e.stream === 'as2' && e.type !== 'domain-created');
    expect(r.moved).toBe(moved.length);
    expect(r.movedExamples[0]).toMatchObject({ source: 'md.trace', from: 'as2', to: 'as1' });
    // Every record is where the unmerged routing put it, as2 read as as1.
    const where = new Map(after.map((e) => [e.id, e.stream]));
    for (const e of before) if (e.type !== 'domain-created') expect(where.get(e.id)).toBe('as1');
    // The two tasks mapped 0xffe42000 at once: one domain cannot hold both, so the merge is refused there and said.
    expect(r.after.refused).toBe(1);
  });

  it('a space opened later kept, an earlier one merged into it: the kept one is created where the first of them opened', async () => {
    const db = tempDb();
    await importInto(db, join(REPRO, 'md.trace'), {});
    const { out } = await reroute(db, { merge: ['as2,as1'] });
    const ev = events(out) as Array<{ position: number; id: string; stream: string; type: string }>;
    expect(ev[0]).toMatchObject({ type: 'domain-created', stream: 'as2' });
    expect(new Set(ev.map((e) => e.stream))).toEqual(new Set(['as2']));
  });

  it('generated traces: merging every space into the first puts each record where the unmerged reroute did, renamed', async () => {
    await loadQueryBuilder();
    await fc.assert(
      fc.asyncProperty(traceArb({}), async (t) => {
        const file = traceFile(t);
        const db = join(dirname(file), 'orig.db');
        await importInto(db, file, { profile: profileOf(t) });
        const spaces = new Queries(db, { readonly: true });
        const names = spaces.domains().map((d) => d.name);
        spaces.close();
        if (names.length < 2) return;
        const { out } = await reroute(db, { merge: [names.join(',')] });
        const orig = events(db) as Array<{ id: string; stream: string; type: string }>;
        const merged = new Map((events(out) as Array<{ id: string; stream: string }>).map((e) => [e.id, e.stream]));
        for (const e of orig) if (e.type !== 'domain-created') expect(merged.get(e.id)).toBe(names[0]);
      }),
      { numRuns: RUNS, endOnFailure: process.env.PROP_NO_SHRINK !== undefined },
    );
  }, 120_000);
});

describe('reroute: bad input exits 2, says why, and writes nothing', () => {
  const left = (dir: string) => readdirSync(dir).filter((n) => n.includes('new'));

  it('an unknown space to merge, --out equal to the ledger, --out that exists, --domain-by dev, a bad --skew', async () => {
    const db = tempDb();
    await importInto(db, join(REPRO, 'md.trace'), {});
    const dir = dirname(db);
    const out = join(dir, 'new.db');
    const bytes = readFileSync(db);
    let r = await cli('--db', db, 'reroute', '--out', out, '--merge', 'as1,as7');
    expect(r.code).toBe(2);
    expect(r.err).toContain('as7');
    expect(left(dir)).toEqual([]);
    r = await cli('reroute', db, '--out', db);
    expect(r.code).toBe(2);
    expect(r.err).toContain('is the ledger itself');
    r = await cli('reroute', db, '--out', join(dir, '.', 'ledger.db'));
    expect(r.code).toBe(2);
    r = await cli('reroute', db, '--out', out, '--domain-by', 'dev');
    expect(r.code).toBe(2);
    expect(r.err).toContain('dev=');
    r = await cli('reroute', db, '--out', out, '--skew', '-3');
    expect(r.code).toBe(2);
    expect(r.err).toContain('--skew');
    r = await cli('reroute', db, '--out', out, '--merge', 'as1');
    expect(r.code).toBe(2);
    r = await cli('reroute', db, '--out', out, '--merge', 'as1,as2', '--merge', 'as2,as1');
    expect(r.code).toBe(2);
    expect(left(dir)).toEqual([]);
    writeFileSync(out, 'x');
    r = await cli('reroute', db, '--out', out);
    expect(r.code).toBe(2);
    expect(r.err).toContain('exists');
    expect(readFileSync(out, 'utf8')).toBe('x');
    expect(readFileSync(db).equals(bytes)).toBe(true);
  });

  it('a ledger with no imports, and no ledger at all', async () => {
    const db = tempDb();
    const l = new Ledger(db);
    await applyFile(l, join(EX, 'scenario.jsonl'));
    l.close();
    const out = join(dirname(db), 'new.db');
    let r = await cli('reroute', db, '--out', out);
    expect(r.code).toBe(2);
    expect(r.err).toContain('holds no imported trace');
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dirname(db)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    r = await cli('reroute', join(dirname(db), 'none.db'), '--out', out);
    expect(r.code).toBe(2);
    expect(r.err).toContain('no ledger at');
  });

  it('the text and --json reports', async () => {
    const db = tempDb();
    await importInto(db, join(REPRO, 'md.trace'), {});
    const out = join(dirname(db), 'm.db');
    const r = await cli('--json', 'reroute', db, '--out', out, '--merge', 'as1,as2');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { before: { spaces: unknown[] }; after: { spaces: unknown[] }; moved: number };
    expect(j.before.spaces).toEqual([
      { name: 'as1', events: 3 },
      { name: 'as2', events: 5 },
    ]);
    expect(j.after.spaces).toEqual([{ name: 'as1', events: 7 }]);
    expect(j.moved).toBe(4);
    const t = await cli('reroute', db, '--out', join(dirname(db), 't.db'));
    expect(t.code).toBe(0);
    expect(t.out).toContain('spaces before: as1 (3), as2 (5)');
    expect(t.out).toContain('records in another space: 0');
  });
});
