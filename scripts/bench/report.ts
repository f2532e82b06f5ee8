/**
 * Report benchmark (issue 18): a ledger of N generated events (workload.ts: one domain, about
 * 20,000 mappings live at a time) or a given ledger, its `report` written, and the file opened in
 * Debian's chromium (playwright-core, headless): the file's size, the time `report` takes, the time
 * the page takes from navigation to ready (data parsed, runs decoded, first drawing), a redraw,
 * and, as a baseline measured in the same run, the same file with a script that only parses the
 * data (the least any page showing it must do).
 *
 *   npm run bench:report -- [events=1000000]        or        npm run bench:report -- --ledger FILE
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Ledger } from '../../src/projections/ledger.js';
import { Queries } from '../../src/projections/queries.js';
import { CLIENT_JS } from '../../src/cli/render/report-client.js';
import { launch } from '../../test/browser/browser.js';
import { workload } from './workload.js';

const argv = process.argv.slice(2);
const given = argv[0] === '--ledger' ? argv[1] : undefined;
const N = given ? 0 : Number(argv[0] ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), 'iommu-ledger-report-bench-'));
const cli = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'iommu-ledger.js');
const fmt = (v: number) => Math.round(v).toLocaleString('en-US');

let db = given;
if (!db) {
  db = join(dir, 'ledger.db');
  const l = new Ledger(db);
  const g = workload();
  for (let b = 0; b < N; b += 10_000) {
    const cmds: unknown[] = [];
    for (let i = b; i < Math.min(N, b + 10_000); i++) cmds.push(g.next());
    l.appendRaw(cmds);
  }
  l.close();
}
const q = new Queries(db);
const events = q.lastPosition;
const live = q.domains().reduce((a, d) => a + q.stateAt(d.name, events).runs.n, 0);
q.close();

const html = join(dir, 'report.html');
const t0 = process.hrtime.bigint();
const said = execFileSync(process.execPath, [cli, '--db', db, 'report', '--out', html], { encoding: 'utf8' });
const reportMs = Number(process.hrtime.bigint() - t0) / 1e6;
const size = statSync(html).size;
// The baseline: the same file, its script replaced by one that parses the data and nothing else.
const plain = join(dir, 'parse-only.html');
const page0 = readFileSync(html, 'utf8');
if (!page0.includes(CLIENT_JS)) throw new Error('the report does not hold the page script as report-client.ts has it');
writeFileSync(
  plain,
  page0.replace(CLIENT_JS, "window.parsed = JSON.parse(document.getElementById('report-data').textContent); document.body.dataset.ready = 'true';"),
);

const browser = await launch();
async function open(file: string, ready: string): Promise<{ wall: number; page: import('playwright-core').Page }> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const t = Date.now();
  await page.goto(pathToFileURL(file).href);
  await page.waitForSelector(ready, { state: 'attached', timeout: 300_000 });
  return { wall: Date.now() - t, page };
}
const base = await open(plain, 'body[data-ready="true"]');
await base.page.close();
const { wall, page } = await open(html, 'body[data-ready="true"]');
const first = await page.evaluate(
  () => (window as unknown as { iommuLedgerReport: { lastDraw: { mode: string; runs: number; ms: number } } }).iommuLedgerReport.lastDraw,
);
const redraw = await page.evaluate(() => {
  (document.getElementById('reset') as HTMLButtonElement).click();
  return (window as unknown as { iommuLedgerReport: { lastDraw: { ms: number } } }).iommuLedgerReport.lastDraw.ms;
});
await page.close();
await browser.close();

console.log(`iommu-ledger report bench: ${fmt(events)} events, ${fmt(live)} runs live at the end (node ${process.version}, headless chromium)`);
console.log(said.trim());
const row = (what: string, value: string, baseline = '', ratio = '') =>
  console.log(`${what.padEnd(44)} ${value.padStart(14)} ${baseline.padStart(16)} ${ratio.padStart(7)}`);
row('measure', 'report', 'parse only', 'ratio');
row('file size (MB)', (size / 2 ** 20).toFixed(1));
row('`report` (ms)', fmt(reportMs));
row('open in chromium, navigation to ready (ms)', fmt(wall), fmt(base.wall), (base.wall / wall).toFixed(2));
row(`first drawing (ms; ${first.mode}, ${fmt(first.runs)} runs)`, fmt(first.ms));
row('redraw of the whole view (ms)', fmt(redraw));
rmSync(dir, { recursive: true, force: true });
