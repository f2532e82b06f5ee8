/**
 * Ledger benchmarks (issue 4). Every figure is printed with its ratio to a raw better-sqlite3
 * baseline measured in the same run, because this machine's speed drifts by +-30%.
 *
 *   npm run bench:ledger -- [events=1000000] [single=5000]
 *
 * The ledger is opened as the CLI's apply and rebuild open it, with a full garbage collection
 * every COLLECT_GARBAGE_EVERY events; BENCH_GC=0 leaves collection to V8 alone.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectGarbage } from '../../src/cli/gc.js';
import { COLLECT_GARBAGE_EVERY, Ledger } from '../../src/projections/ledger.js';
import { Queries } from '../../src/projections/queries.js';
import { workload } from './workload.js';

const N = Number(process.argv[2] ?? 1_000_000);
const SINGLE = Number(process.argv[3] ?? 5000);
const BATCH = 10_000;
const dir = mkdtempSync(join(tmpdir(), 'iommu-ledger-bench-'));
let peakRss = 0;
/** The peak since the phase began (appends, rebuild, queries), reported beside the process's peak. */
let phasePeak = 0;
const sample = () => {
  const rss = process.memoryUsage().rss;
  peakRss = Math.max(peakRss, rss);
  phasePeak = Math.max(phasePeak, rss);
};
const phase = (): number => {
  sample();
  const p = phasePeak;
  phasePeak = 0;
  return p / 2 ** 20;
};
const timer = setInterval(sample, 50);

function time<T>(fn: () => T): [T, number] {
  const t = process.hrtime.bigint();
  const r = fn();
  return [r, Number(process.hrtime.bigint() - t) / 1e6];
}

function rawDb(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE events (position INTEGER PRIMARY KEY, stream INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL)');
  return db;
}

const rate = (n: number, ms: number) => (n / ms) * 1000;
const fmt = (v: number) => Math.round(v).toLocaleString('en-US');
const rows: Array<[string, string, string, string]> = [];
const report = (what: string, value: string, baseline: string, ratio: string) => {
  rows.push([what, value, baseline, ratio]);
  console.log(`${what.padEnd(44)} ${value.padStart(16)} ${baseline.padStart(18)} ${ratio.padStart(8)}`);
};

console.log(
  `iommu-ledger bench: ${fmt(N)} generated commands, batches of ${fmt(BATCH)}, synchronous=FULL, WAL, ${process.env.BENCH_GC === '0' ? 'no forced garbage collection' : `a full garbage collection every ${fmt(COLLECT_GARBAGE_EVERY)} events`} (node ${process.version})`,
);
console.log(`${'measure'.padEnd(44)} ${'iommu-ledger'.padStart(16)} ${'raw SQLite'.padStart(18)} ${'ratio'.padStart(8)}`);

// ---- raw baselines: build, stringify and insert 10,000 rows per transaction, in turns with the
// ledger's batches (below), so that both meet the same machine: its speed drifts by +-15% over a
// minute here. Iterate and parse: before the ledger's appends and again after its rebuild.
const rawPath = join(dir, 'raw.db');
const raw = rawDb(rawPath);
const ins = raw.prepare('INSERT INTO events (position, stream, type, data) VALUES (?, 1, ?, ?)');
const gen0 = workload();
let rawBatchPos = 1;
const rawBatch = (from: number) =>
  raw.transaction(() => {
    for (let i = from; i < Math.min(N, from + BATCH); i++) {
      const c = gen0.next();
      ins.run(rawBatchPos++, c.op as string, JSON.stringify(c));
    }
  })();
const rawIterate = (): number =>
  time(() => {
    let n = 0;
    for (const r of raw.prepare('SELECT data FROM events ORDER BY position').iterate() as IterableIterator<{ data: string }>) {
      if ((JSON.parse(r.data) as { op: string }).op) n++;
    }
    return n;
  })[1];

// ---- the ledger
phase();
const path = join(dir, 'ledger.db');
// As the CLI's apply and rebuild open it: a full collection every COLLECT_GARBAGE_EVERY events
// (BENCH_GC=0: none, to see what V8 does on its own).
const gcOpt = process.env.BENCH_GC === '0' ? {} : { collectGarbage };
const ledger = new Ledger(path, { durable: true, ...gcOpt });
const gen = workload();
let rawInsMs = 0;
let appendMs = 0;
for (let b = 0; b < N; b += BATCH) {
  rawInsMs += time(() => rawBatch(b))[1];
  const cmds: unknown[] = [];
  for (let i = b; i < Math.min(N, b + BATCH); i++) cmds.push(gen.next());
  appendMs += time(() => ledger.appendRaw(cmds))[1];
  sample();
}
const rawIterBefore = rawIterate();
report('append, batches of 10,000 (events/s)', fmt(rate(N, appendMs)), fmt(rate(N, rawInsMs)), (rawInsMs / appendMs).toFixed(2));
const appendPeak = phase();

// ---- durable single-command transactions: the raw one-row transaction, the ledger, and the
// ledger with its projections deferred (LedgerOptions.deferProjections: each transaction stores
// its event; every DEFER-th writes the projections of all), in rounds of ROUND transactions each,
// so that all three meet the same disk (its fsync time drifts by 2x over a minute here). The
// deferred figure includes writing the last projections (projectNow): every query could answer.
const DEFER = 256;
const ROUND = 100;
const rawSingle = rawDb(join(dir, 'raw-single.db'));
const ins1 = rawSingle.prepare('INSERT INTO events (position, stream, type, data) VALUES (?, 1, ?, ?)');
const single = new Ledger(join(dir, 'single.db'), { durable: true });
const deferred = new Ledger(join(dir, 'deferred.db'), { durable: true, deferProjections: DEFER });
const [gen1, gen2, gen3] = [workload(7), workload(7), workload(7)];
let rawSingleMs = 0;
let singleMs = 0;
let deferredMs = 0;
let rawPos = 0;
for (let done = 0; done < SINGLE; done += ROUND) {
  const n = Math.min(ROUND, SINGLE - done);
  rawSingleMs += time(() => {
    for (let i = 0; i < n; i++) {
      const c = gen1.next();
      rawSingle.transaction(() => ins1.run(++rawPos, c.op as string, JSON.stringify(c)))();
    }
  })[1];
  singleMs += time(() => {
    for (let i = 0; i < n; i++) single.appendRaw([gen2.next()]);
  })[1];
  deferredMs += time(() => {
    for (let i = 0; i < n; i++) deferred.appendRaw([gen3.next()]);
  })[1];
}
deferredMs += time(() => deferred.projectNow())[1];
rawSingle.close();
single.close();
deferred.close();
report(`append, 1 per durable transaction (${fmt(SINGLE)})`, fmt(rate(SINGLE, singleMs)), fmt(rate(SINGLE, rawSingleMs)), (rawSingleMs / singleMs).toFixed(2));
report(`  projections deferred (up to ${DEFER} events)`, fmt(rate(SINGLE, deferredMs)), fmt(rate(SINGLE, rawSingleMs)), (rawSingleMs / deferredMs).toFixed(2));

phase();
const [rb, rebuildMs] = time(() => ledger.rebuild(() => sample()));
const rebuildPeak = phase();
const rawIterAfter = rawIterate();
raw.close();
const rawIterMs = (rawIterBefore + rawIterAfter) / 2;
report('rebuild all projections (events/s)', fmt(rate(rb.events, rebuildMs)), fmt(rate(N, rawIterMs)), (rawIterMs / rebuildMs).toFixed(2));
// One projection on its own (rebuild --projection findings: findings and faults, which shares its table).
const [rs, someMs] = time(() => ledger.rebuild(() => sample(), { projections: ['findings'] }));
report(`  ${rs.projections.join(' + ')} only (events/s)`, fmt(rate(rs.events, someMs)), fmt(rate(N, rawIterMs)), (rawIterMs / someMs).toFixed(2));
console.log(
  `  (raw iterate + parse before the appends / after the rebuild: ${fmt(rate(N, rawIterBefore))} / ${fmt(rate(N, rawIterAfter))} rows/s; the mean is the baseline)`,
);
const [v, verifyMs] = time(() => ledger.store.verify(() => sample()));
report('verify the hash chain (events/s)', fmt(rate(v.events, verifyMs)), fmt(rate(N, rawIterMs)), (rawIterMs / verifyMs).toFixed(2));
ledger.close();

// ---- queries (library calls, warm)
const q = new Queries(path);
const last = q.lastPosition;
let s = 12345;
const pick = () => {
  s = (s * 1103515245 + 12345) % 2 ** 31;
  return 1 + (s % last);
};
q.stateAt('bench', pick());
const stateTimes: number[] = [];
const pageTimes: number[] = [];
let pages = 0;
for (let i = 0; i < 30; i++) {
  const [st, ms] = time(() => q.stateAt('bench', pick()));
  // The same runs as one object each (what `state` prints from): timed apart, it is not part of the look-up.
  const [pg, pms] = time(() => st.pages);
  pages += pg.length;
  stateTimes.push(ms);
  pageTimes.push(pms);
}
const blameTimes: number[] = [];
const now = q.stateAt('bench', last);
for (let i = 0; i < 200; i++) {
  const pg = now.pages[(i * 7919) % Math.max(1, now.pages.length)];
  const iova = pg ? pg.iova : 0x1_0000_0000n;
  const [, ms] = time(() => q.blame('bench', iova));
  blameTimes.push(ms);
}
q.close();
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const p95 = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length * 0.95)]!;
report('stateAt, random position (ms, median/p95)', `${median(stateTimes).toFixed(1)}/${p95(stateTimes).toFixed(1)}`, `${fmt(pages / 30)} runs avg`, '');
report('  + its runs as PageView objects (ms, median/p95)', `${median(pageTimes).toFixed(1)}/${p95(pageTimes).toFixed(1)}`, '', '');
report('blame, warm (ms, median/p95)', `${median(blameTimes).toFixed(2)}/${p95(blameTimes).toFixed(2)}`, '', '');
// ---- opening the ledger again to append one command (what each `apply` or `import` run does first)
const reopenTimes: number[] = [];
for (let i = 0; i < 3; i++) {
  const [, ms] = time(() => {
    const l = new Ledger(path, { durable: true });
    l.appendRaw([{ op: 'map', domain: 'bench', iova: `0x${(0xfff000_0000 + i * 0x1000).toString(16)}`, paddr: '0x1000', size: '4K', caller: 'bench-reopen' }]);
    l.close();
  });
  reopenTimes.push(ms);
  sample();
}
report('reopen + first append (ms, median of 3)', median(reopenTimes).toFixed(0), '', '');
const sizeOf = (p: string) =>
  ['', '-wal'].reduce(
    (a, x) =>
      a +
      (() => {
        try {
          return statSync(p + x).size;
        } catch {
          return 0;
        }
      })(),
    0,
  );
report(
  'file size per million events (MB)',
  (((sizeOf(path) / N) * 1e6) / 2 ** 20).toFixed(0),
  (((sizeOf(rawPath) / N) * 1e6) / 2 ** 20).toFixed(0),
  (sizeOf(path) / sizeOf(rawPath)).toFixed(2),
);
clearInterval(timer);
sample();
report('peak RSS (MB)', (peakRss / 2 ** 20).toFixed(0), '', '');
report('  during the batched appends / the rebuild (MB)', `${appendPeak.toFixed(0)}/${rebuildPeak.toFixed(0)}`, '', '');
rmSync(dir, { recursive: true, force: true });
