// Automated accessibility checks: axe-core run in the page (empty state, a
// conversation with a reply, the sidebar as a phone's drawer, the dark
// theme, rename and export open, the Vietnamese UI), with no serious or
// critical violation allowed.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { after, afterEach, before, describe, test } from 'node:test';
import { conversationId, sendMessage, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */

const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>> | undefined} */
let browser;

before(async () => {
  checkPrerequisites();
  server = await startServer({ DEMO_REPLY_TOKENS: '160', DEMO_TOKEN_DELAY_MS: '5' });
});

after(async () => {
  await server?.stop();
});

afterEach(async () => {
  await browser?.close();
  browser = undefined;
});

/** @param {Parameters<typeof launchBrowser>[0]} [options] */
async function openApp(options = {}) {
  browser = await launchBrowser(options);
  const page = await browser.context.newPage();
  await page.goto(server.url);
  await waitConnected(page);
  return page;
}

/**
 * Runs axe on the page (WCAG 2.x A and AA rules and axe's best practices)
 * and fails on any serious or critical violation, naming each with its
 * elements. axe is evaluated through the DevTools protocol, which the
 * page's Content-Security-Policy does not govern.
 * @param {Page} page @param {string} where
 */
async function assertAccessible(page, where) {
  await page.evaluate(() => document.fonts.ready);
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(axeSource);
  /** @type {{id: string, impact: string, help: string, nodes: {target: string[], failureSummary: string}[]}[]} */
  const violations = await page.evaluate(async () => {
    const axe = /** @type {any} */ (window).axe;
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((/** @type {any} */ v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((/** @type {any} */ n) => ({ target: n.target, failureSummary: n.failureSummary })),
    }));
  });
  const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const report = serious
    .map((v) => `${v.impact} ${v.id}: ${v.help}\n${v.nodes.map((n) => `  ${n.target.join(' ')}: ${n.failureSummary}`).join('\n')}`)
    .join('\n');
  assert.equal(serious.length, 0, `${where}:\n${report}`);
}

/** A conversation with a finished reply (code, a list and a table in it). @param {Page} page */
async function converse(page) {
  await sendMessage(page, 'Explain binary search in Rust with a code example, and $O(\\log n)$');
  await conversationId(page);
  await waitReply(page, { status: 'complete' });
}

describe('accessibility (axe)', () => {
  test('the empty state, light and dark', async () => {
    const page = await openApp({ colorScheme: 'light' });
    await page.locator('[data-testid=suggestion]').first().waitFor();
    await assertAccessible(page, 'empty state, light');
    await page.emulateMedia({ colorScheme: 'dark' });
    await assertAccessible(page, 'empty state, dark');
  });

  test('a conversation with a reply, light and dark, with rename and export open', async () => {
    const page = await openApp({ colorScheme: 'light' });
    await converse(page);
    await assertAccessible(page, 'conversation, light');
    await page.emulateMedia({ colorScheme: 'dark' });
    await assertAccessible(page, 'conversation, dark');
    await page.locator('[data-testid=export]').click();
    await page.locator('[data-testid=export-markdown]').waitFor();
    await assertAccessible(page, 'export choices, dark');
    await page.keyboard.press('Escape');
    await page.locator('[data-testid=header-rename]').click();
    await page.locator('[data-testid=rename-input]').fill('');
    await page.locator('[data-testid=rename-save]').click();
    await page.locator('[data-testid=rename-problem]').waitFor();
    await assertAccessible(page, 'rename in the header with a problem, dark');
  });

  test("the sidebar as a phone's drawer, and the list's rename", async () => {
    const page = await openApp({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
    await converse(page);
    await page.locator('button[aria-controls=sidebar]').click();
    await page.locator('.sidebar[data-open=true]').waitFor();
    await assertAccessible(page, 'drawer open, dark');
    await page.locator('[data-testid=conversation] [data-testid=rename]').first().click();
    await page.locator('[data-testid=rename-input]').waitFor();
    await assertAccessible(page, 'rename in the list, dark');
  });

  test('the Vietnamese UI', async () => {
    const page = await openApp({ locale: 'vi-VN', colorScheme: 'light' });
    await converse(page);
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'vi');
    await assertAccessible(page, 'Vietnamese conversation');
  });
});
