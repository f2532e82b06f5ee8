/**
 * `npm run screenshot`: the picture README shows (docs/report-demo.png), made by the test code:
 * the demo's ledger, its report, and the same screenshot helper the browser tests use.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/cli/main.js';
import { launch, screenshotReport } from './browser.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-ledger-shot-'));
try {
  const db = join(dir, 'demo.db');
  const html = join(dir, 'demo.html');
  const quiet = { out: () => {}, err: (s: string) => process.stderr.write(s) };
  if ((await run(['demo', '--out', db], quiet)) !== 0) throw new Error('demo failed');
  if ((await run(['--db', db, 'report', '--out', html], quiet)) !== 0) throw new Error('report failed');
  const browser = await launch();
  try {
    await screenshotReport(browser, html, fileURLToPath(new URL('../../docs/report-demo.png', import.meta.url)));
  } finally {
    await browser.close();
  }
  console.log('wrote docs/report-demo.png');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
