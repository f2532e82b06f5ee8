/**
 * The HTML report in a real browser (issue 18): Debian's chromium through playwright-core. The
 * demo's ledger and a multi-domain ledger imported from real trace extracts; what the page shows
 * is checked against the CLI's own answers (`audit --json`, `explain`).
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../cli/helpers.js';
import { tempDb } from '../ledger/helpers.js';
import { browserPath, INSTALL_HINT, launch, openReport, screenshotReport } from './browser.js';

const REAL = join(__dirname, '..', 'fixtures', 'real');
const hasBrowser = browserPath() !== undefined;
if (!hasBrowser) console.warn(`test/browser/report.test.ts skipped: ${INSTALL_HINT}`);

// .ci/run sets REQUIRE_BROWSER: there a missing browser is a failure, not a skip.
it.runIf(!hasBrowser && process.env.REQUIRE_BROWSER !== undefined)('has a browser to run in (REQUIRE_BROWSER is set)', () => {
  expect.fail(INSTALL_HINT);
});

async function reportOf(db: string): Promise<string> {
  const html = join(dirname(db), 'report.html');
  const r = await cli('--db', db, 'report', '--out', html);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^wrote .*report\.html: \d+ address space\(s\)/);
  return html;
}

/** The report of a ledger imported from a real trace extract (test/fixtures/real), as intel-vtd. */
async function reportOfTrace(name: string): Promise<string> {
  const db = tempDb();
  expect((await cli('--db', db, 'import', join(REAL, name), '--profile', 'intel-vtd')).code).toBe(0);
  return reportOf(db);
}

describe.skipIf(!hasBrowser)('the HTML report in a real browser', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('the demo: as many over-unmap markers as audit finds, clicking one shows explain, no error, nothing fetched, not blank', async () => {
    const db = tempDb('demo.db');
    expect((await cli('demo', '--out', db)).code).toBe(0);
    const html = await reportOf(db);
    const { page, errors, requests } = await openReport(browser, html);
    const harmful = JSON.parse((await cli('--db', db, '--json', 'audit', 'over-unmaps')).out) as Array<{ position: number; domain: string }>;
    const all = JSON.parse((await cli('--db', db, '--json', 'audit', 'over-unmaps', '--all')).out) as unknown[];
    expect(harmful.length).toBeGreaterThan(0);
    expect(await page.locator('tr.finding[data-kind="over-unmap"]:not([data-verdict="stepped"])').count()).toBe(harmful.length);
    const inData = await page.evaluate(() => {
      const d = (window as unknown as { iommuLedgerReport: { domains: Array<{ findings: Array<{ kind: string }> }> } }).iommuLedgerReport;
      return d.domains.reduce((a, x) => a + x.findings.filter((f) => f.kind === 'over-unmap').length, 0);
    });
    expect(inData).toBe(all.length);
    expect(await page.locator('#count-harmful').textContent()).toBe(String(harmful.length));

    // Clicking a finding shows the text `explain` prints for that IOVA at that event.
    const first = harmful[0]!;
    const row = page.locator(`tr.finding[data-kind="over-unmap"][data-domain="${first.domain}"]`).first();
    await row.click();
    const iova = await page.evaluate(
      ([domain]) => {
        const d = (
          window as unknown as { iommuLedgerReport: { domains: Array<{ name: string; findings: Array<{ kind: string; iova: string; position: number }> }> } }
        ).iommuLedgerReport.domains.find((x) => x.name === domain)!;
        return d.findings.find((f) => f.kind === 'over-unmap')!;
      },
      [first.domain],
    );
    const shown = await page.locator('#explain').textContent();
    const explain = await cli('--db', db, 'explain', iova.iova, '--domain', first.domain, '--at', String(iova.position));
    expect(shown).toBe(explain.out.replace(/\n$/, ''));
    expect(await page.locator('tr.finding.selected').count()).toBe(1);

    // Something is drawn: many non-white pixels on the timeline, and a screenshot of some size.
    const inked = await page.evaluate(() => {
      const c = document.getElementById('timeline') as HTMLCanvasElement;
      const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) if (px[i]! < 240 || px[i + 1]! < 240 || px[i + 2]! < 240) n++;
      return n;
    });
    expect(inked).toBeGreaterThan(2000);
    const png = await screenshotReport(browser, html, join(dirname(db), 'shot.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.length).toBeGreaterThan(20_000);
    // The runs the page decodes (report.ts encodes them as columns) are the ledger's: the ones
    // still live at the end are what `state` lists.
    for (const domain of ['gpu0', 'omap-isp']) {
      const state = JSON.parse((await cli('--db', db, '--json', 'state', '--domain', domain)).out) as {
        pages: Array<{ iova: string; pageSize: string; count: number; mappedBy: number; caller: string }>;
      };
      const live = await page.evaluate((name) => {
        const sel = document.getElementById('domain') as HTMLSelectElement;
        const r = (
          window as unknown as {
            iommuLedgerReport: { callers: string[]; domains: Array<{ name: string; runCount: number }>; runOf: (n: string, i: number) => unknown[] };
          }
        ).iommuLedgerReport;
        sel.selectedIndex = r.domains.findIndex((d) => d.name === name);
        sel.dispatchEvent(new Event('change'));
        const d = r.domains[sel.selectedIndex]!;
        const runs = Array.from({ length: d.runCount }, (_, i) => r.runOf(name, i));
        return runs.filter((x) => x[4] === null).map((x) => [x[0], x[2], x[6], r.callers[x[5] as number]]);
      }, domain);
      expect(live).toEqual(state.pages.map((p) => [p.iova, p.pageSize, p.mappedBy, p.caller]));
    }
    expect(errors).toEqual([]);
    expect(requests).toEqual([]);
    await page.close();
  });

  it('a multi-domain ledger from real trace extracts: a timeline per address space, faults and findings as the CLI counts them', async () => {
    const db = tempDb();
    for (const t of ['md.trace', 'fl.trace']) expect((await cli('--db', db, 'import', join(REAL, t))).code).toBe(0);
    const html = await reportOf(db);
    const { page, errors, requests } = await openReport(browser, html);
    const domains = await page.locator('#domain option').count();
    expect(domains).toBeGreaterThan(1);
    const faults = JSON.parse((await cli('--db', db, '--json', 'audit', 'faults')).out) as unknown[];
    expect(await page.locator('tr.finding[data-kind="fault"]').count()).toBe(faults.length);
    // Every address space can be shown, and each draws its runs.
    for (let i = 0; i < domains; i++) {
      await page.selectOption('#domain', { index: i });
      const drawn = await page.evaluate(() => {
        const sel = document.getElementById('domain') as HTMLSelectElement;
        const d = (window as unknown as { iommuLedgerReport: { domains: Array<{ runCount: number; runsDrawn?: number }> } }).iommuLedgerReport.domains[
          sel.selectedIndex
        ]!;
        return [d.runCount, d.runsDrawn ?? 0];
      });
      expect(drawn[1]).toBe(drawn[0]);
    }
    expect(errors).toEqual([]);
    expect(requests).toEqual([]);
    await page.close();
  });

  it('a ledger with more findings than the table shows at first: the rest come with the button', async () => {
    // 1,100 over-unmaps: a 2M page mapped, then 4K of it unmapped (intel-vtd removes the whole page).
    const db = tempDb();
    const lines = [JSON.stringify({ op: 'domain', domain: 'd', profile: 'intel-vtd' })];
    for (let i = 0; i < 1100; i++) {
      const iova = `0x${(0x40000000 + i * 0x200000).toString(16)}`;
      lines.push(JSON.stringify({ op: 'map', domain: 'd', iova, paddr: iova, size: '0x200000', caller: 'a' }));
      lines.push(JSON.stringify({ op: 'unmap', domain: 'd', iova, size: '0x1000', caller: 'a' }));
    }
    const file = join(dirname(db), 'many.jsonl');
    writeFileSync(file, lines.join('\n') + '\n');
    expect((await cli('--db', db, 'apply', file)).code).toBe(0);
    const html = await reportOf(db);
    const { page, errors } = await openReport(browser, html);
    expect(await page.locator('tr.finding').count()).toBe(1000);
    await page.locator('tr.more button').click();
    expect(await page.locator('tr.finding').count()).toBe(1100);
    expect(await page.locator('tr.more').count()).toBe(0);
    // A row added by the button is clicked like any other: the panel shows its finding.
    await page.locator('tr.finding').nth(1050).click();
    const position = await page.locator('tr.finding').nth(1050).getAttribute('id');
    expect(position).toMatch(/^finding-d-\d+-over-unmap$/);
    expect(await page.locator('#explain').getAttribute('data-position')).toBe(position!.split('-')[2]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('level of detail: past rasterOver runs in view the page merges them into a raster, every run counted, the same pixels inked as with rectangles', async () => {
    const { page, errors } = await openReport(browser, await reportOfTrace('lazy-multidev-boot.trace'));
    type Page = { rasterOver: number; lastDraw: { mode: string; runs: number }; domains: Array<{ runCount: number }> };
    // The plot's pixels that are not white, as indexes, drawn one way and then the other (same view).
    const inked = (rasterOver: number) =>
      page.evaluate((over) => {
        const d = (window as unknown as { iommuLedgerReport: Page }).iommuLedgerReport;
        d.rasterOver = over;
        (document.getElementById('reset') as HTMLButtonElement).click();
        const c = document.getElementById('timeline') as HTMLCanvasElement;
        const px = c.getContext('2d')!.getImageData(110, 8, c.width - 118, c.height - 36).data;
        const on: number[] = [];
        for (let i = 0; i < px.length; i += 4) if (px[i]! < 250 || px[i + 1]! < 250 || px[i + 2]! < 250) on.push(i / 4);
        return { on, draw: d.lastDraw, runs: d.domains[0]!.runCount };
      }, rasterOver);
    const rects = await inked(1e9);
    const raster = await inked(0);
    expect(rects.draw.mode).toBe('rects');
    expect(raster.draw.mode).toBe('raster');
    expect(raster.draw.runs).toBe(raster.runs);
    expect(rects.on.length).toBeGreaterThan(1000);
    // A run covers at least a whole pixel in the raster: it inks every pixel a rectangle touches
    // (but for the edges of antialiased rectangles, well under 10% of them), and little else.
    const set = new Set(raster.on);
    const shared = rects.on.filter((i) => set.has(i)).length;
    expect(shared / rects.on.length).toBeGreaterThan(0.9);
    expect(raster.on.length / rects.on.length).toBeLessThan(1.5);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('hover on a run names its map event, caller, pages and life, with trace times', async () => {
    const { page, errors } = await openReport(browser, await reportOfTrace('lazy-multidev-boot.trace'));
    // A run made by an event with a trace time (the boot's first maps have none: they are shown
    // without), found by moving over the plot from the right, where the trace's later events are.
    const box = (await page.locator('#timeline').boundingBox())!;
    let text = '';
    for (let x = box.width - 20; x > 120 && !text; x -= 40) {
      for (let y = 12; y < box.height - 30 && !text; y += 6) {
        await page.mouse.move(box.x + x, box.y + y);
        text = (await page.locator('#tip').textContent()) ?? '';
        if (!/mapped by #\d+ \(/.test(text)) text = '';
      }
    }
    expect(text).toMatch(
      /^0x[0-9a-f]+\+\d+[KMG]? in \d+[KMG]? pages, mapped by #\d+ \(\u2248?\d+\.\d+\) \S+, live from #\d+ \(\u2248?\d+\.\d+\)( on| to #\d+ \(\u2248?\d+\.\d+\))$/,
    );
    expect(errors).toEqual([]);
    await page.close();
  });
});
