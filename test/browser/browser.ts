/**
 * A real browser for the report's tests and its screenshot (docs/report-demo.png): Debian's
 * `chromium` (installed by .ci/run when missing), driven by playwright-core, which downloads
 * nothing and uses the installed browser. `browserPath()` says where it is, or why there is none.
 */
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

export const INSTALL_HINT = "no chromium found: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH; .ci/run installs it";

export function browserPath(): string | undefined {
  for (const p of [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser']) if (p && existsSync(p)) return p;
  return undefined;
}

export async function launch(): Promise<Browser> {
  const executablePath = browserPath();
  if (!executablePath) throw new Error(INSTALL_HINT);
  return chromium.launch({ executablePath, args: ['--no-sandbox'] });
}

/** A report opened from its file, with every request that is not that file refused and recorded, and its errors collected. */
export async function openReport(
  browser: Browser,
  html: string,
  viewport = { width: 1200, height: 900 },
): Promise<{ page: Page; errors: string[]; requests: string[] }> {
  const page = await browser.newPage({ viewport });
  const errors: string[] = [];
  const requests: string[] = [];
  const url = pathToFileURL(html).href;
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  await page.route('**/*', (route) => {
    const u = route.request().url();
    if (u === url) return route.continue();
    requests.push(u);
    return route.abort();
  });
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]');
  return { page, errors, requests };
}

/** A PNG of the report as it opens (the summary and the timeline of its first address space). */
export async function screenshotReport(browser: Browser, html: string, png: string): Promise<Buffer> {
  const { page } = await openReport(browser, html, { width: 1280, height: 820 });
  const shot = await page.screenshot({ path: png });
  await page.close();
  return shot;
}
