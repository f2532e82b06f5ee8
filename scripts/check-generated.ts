/**
 * How often the importer's ledger agrees with the truth of generated traces (test/import/gen),
 * per family, over many traces: divergences and over-unmaps as the truth's, no more spaces than
 * the domains that map anything plus one, the union of the spaces equal to the truth at the end
 * and at every consistent cut (the first k printed records are the first k events).
 *
 *   node dist/scripts/check-generated.js [traces per family = 500] [seed = 1] [a word of the family names]
 *
 * Prints one line per family. A trace whose printed records could have come from several
 * histories (a domain's pre-trace mapping unmapped while another domain has the same range
 * mapped, say) can be resolved otherwise than the truth: this measures how often.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importTrace } from '../src/import/store.js';
import { Ledger } from '../src/projections/ledger.js';
import { Queries } from '../src/projections/queries.js';
import { firstWrongCut, ledgerView, show } from '../test/import/gen/compare.js';
import { generateTrace, recipeArb, type TraceOptions } from '../test/import/gen/index.js';

const N = Number(process.argv[2] ?? 500);
const SEED = Number(process.argv[3] ?? 1);

const FAMILIES: Array<[string, TraceOptions]> = [
  ['one DMA domain (and VFIO), ties, may start mid-stream', { multiDomain: false }],
  ['one DMA domain, clock skew up to 10 µs', { multiDomain: false, skewUs: 10 }],
  ['boot-time traces, up to 4 domains and the floppy map', { preTrace: false, floppy: true }],
  ['up to 4 domains, ties, may start mid-stream', {}],
  ['up to 4 domains, clock skew up to 10 µs', { skewUs: 10 }],
];

const ONLY = process.argv[4]; // a word of the family names, to run only those
for (const [name, opts] of FAMILIES.filter(([n]) => ONLY === undefined || n.includes(ONLY))) {
  const c = { traces: 0, divergences: 0, overUnmaps: 0, spaces: 0, end: 0, everyCut: 0, otherHistory: 0 };
  const t0 = Date.now();
  for (const recipe of fc.sample(recipeArb(opts), { numRuns: N, seed: SEED })) {
    const t = generateTrace(recipe, opts);
    const dir = mkdtempSync(join(tmpdir(), 'check-generated-'));
    try {
      const file = join(dir, 'gen.trace');
      writeFileSync(file, t.text);
      const ledger = new Ledger(join(dir, 'l.db'));
      const s = await importTrace(ledger, file, { profile: t.truth.domains[0]?.profile ?? 'intel-vtd' });
      ledger.close();
      const q = new Queries(join(dir, 'l.db'), { readonly: true });
      const view = ledgerView(q, s.spaces);
      c.traces++;
      if (q.findings({ kind: 'divergence' }).length !== t.oracle.expectedDivergences) c.divergences++;
      if (q.findings({ kind: 'over-unmap' }).length !== t.oracle.overUnmaps) c.overUnmaps++;
      const used = new Set(t.oracle.records.filter((r) => r.kind === 'map' || r.kind === 'unmap').map((r) => r.domain)).size;
      if (s.spaces.length > used + 1) c.spaces++;
      if (view.unionAt(view.lastPosition) !== show(t.oracle.liveUnionPrintedAfter(t.oracle.records.length))) c.end++;
      if (firstWrongCut(t, view)) {
        c.everyCut++;
        // Our reading is itself a history that prints these lines when every map it stores
        // succeeds and every unmap removes what the kernel reported (no refused command, no
        // divergence): the trace cannot tell the two apart.
        if (q.refusedCommands() === 0 && q.findings({ kind: 'divergence' }).length === 0) c.otherHistory++;
      }
      q.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const pct = (n: number) => `${n} (${((100 * n) / c.traces).toFixed(1)}%)`;
  console.log(
    `${name}: ${c.traces} traces in ${((Date.now() - t0) / 1000).toFixed(0)} s; disagreeing with the truth: divergences ${pct(c.divergences)}, over-unmaps ${pct(c.overUnmaps)}, too many spaces ${pct(c.spaces)}, union at the end ${pct(c.end)}, union at some consistent cut ${pct(c.everyCut)}, of which our reading is another history printing the same lines ${c.otherHistory}`,
  );
}
