/**
 * `iommu-ledger demo`: builds a ledger from the bundled examples (a 2011-style OMAP trace, a
 * modern VFIO trace on Intel, and a hand-written scenario) and shows the over-unmap audit and
 * an explanation: the first thing a newcomer sees.
 */
import { writeReport } from './report.js';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatSize, hex } from '../core/address.js';
import { Ledger } from '../projections/ledger.js';
import { madeBy, markMadeByDemo } from '../projections/meta.js';
import { InputError } from './errors.js';
import { Queries } from '../projections/queries.js';
import { applyFile } from './apply.js';
import { explainText } from './render/explain.js';
import { table } from './render/format.js';
import { importFile } from './import.js';

/** The examples folder, as a path relative to where the user stands when that is shorter. */
function examplesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'examples', 'omap-2011.trace'))) {
      const abs = join(dir, 'examples');
      const rel = relative(process.cwd(), abs);
      return rel.length < abs.length ? rel : abs;
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find the examples/ folder of iommu-ledger');
}

export async function runDemo(dbPath: string, out: (s: string) => void, asJson: boolean): Promise<void> {
  const ex = examplesDir();
  if (existsSync(dbPath)) {
    // Start afresh, but only over an earlier demo: never over someone's ledger.
    if (madeBy(dbPath) !== 'demo') throw new InputError(`${dbPath} exists and was not written by 'iommu-ledger demo': choose another --out`);
    for (const suffix of ['', '-wal', '-shm']) rmSync(dbPath + suffix, { force: true });
  }
  const ledger = new Ledger(dbPath);
  markMadeByDemo(ledger);
  const steps: string[] = [];
  try {
    const omap = await importFile(ledger, join(ex, 'omap-2011.trace'), { profile: 'omap', domain: 'omap-isp' });
    steps.push(`$ iommu-ledger import examples/omap-2011.trace --profile omap --domain omap-isp`, ...omap.report);
    // Its fault line names the device's driver, as only AMD-Vi's reports do (VT-d logs faults to
    // the kernel log): inferred, the profile would be amd-v1. The trace is an Intel host's.
    const vfio = await importFile(ledger, join(ex, 'vfio-intel.trace'), { profile: 'intel-vtd' });
    steps.push('', `$ iommu-ledger import examples/vfio-intel.trace --profile intel-vtd`, ...vfio.report);
    const sc = await applyFile(ledger, join(ex, 'scenario.jsonl'));
    steps.push(
      '',
      `$ iommu-ledger apply examples/scenario.jsonl`,
      `${sc.commands} commands, ${sc.stored} stored; ${sc.overUnmaps} over-unmap(s), ${sc.leftMapped} left mapped`,
    );
  } finally {
    ledger.close();
  }
  const q = new Queries(dbPath);
  try {
    const over = q.findings({ kind: 'over-unmap' });
    const first = over[0];
    const fault = q.faults({ domain: 'omap-isp' })[0];
    const explainIova = fault?.iova ?? first?.collateral[0]?.iova;
    const explanation = explainIova !== undefined ? q.explain(fault?.domain ?? first!.domain, explainIova) : undefined;
    const explanationText = explanation ? explainText(explanation) : undefined;
    // The picture too: the demo's report, beside its ledger (render/report.ts).
    const htmlPath = dbPath.replace(/\.db$/, '') + '.html';
    writeReport(dbPath, htmlPath);
    if (asJson) {
      out(JSON.stringify({ ledger: dbPath, overUnmaps: over.length, explain: explanationText, report: htmlPath }, null, 2));
      return;
    }
    out(steps.join('\n'));
    out(`\n$ iommu-ledger --db ${dbPath} audit over-unmaps`);
    out(`${over.length} over-unmap(s): unmaps that removed more than was asked`);
    out(
      table(
        ['#', 'DOMAIN', 'CALLER', 'REQUESTED', 'UNMAPPED', 'COLLATERAL', 'MAPPED BY'],
        over.map((f) => [
          String(f.position),
          f.domain,
          f.caller,
          `${hex(f.requested.iova)}+${formatSize(f.requested.size)}`,
          formatSize(f.unmappedSize),
          formatSize(f.collateral.reduce((a, c) => a + c.size, 0n)),
          [...new Set(f.collateral.map((c) => `#${c.mappedBy} ${c.mappedByCaller}`))].join(', '),
        ]),
      ),
    );
    if (explanation && explainIova !== undefined) {
      out(`\n$ iommu-ledger --db ${dbPath} explain ${hex(explainIova)} --domain ${explanation.blame.domain}`);
      out(explanationText!);
    }
    out(`\nNext: iommu-ledger --db ${dbPath} callers | state --domain gpu0 | history 0x200000 2M --domain gpu0 | audit faults`);
    out(`Make the callers symmetric, verified by replay: iommu-ledger --db ${dbPath} migrate --strategy split-maps --out migrated.db`);
    out(`The timeline of every address space, to open in a browser: ${htmlPath} (iommu-ledger --db ${dbPath} report --out FILE)`);
  } finally {
    q.close();
  }
}
