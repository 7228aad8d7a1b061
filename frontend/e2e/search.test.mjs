// Searching messages from the sidebar, and the sidebar's list loaded a page at
// a time, in headless Chromium against a real node (its history in SQLite).
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { api, conversationId, listedConversations, sendMessage, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */

const TIMEOUT = 15_000;

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>>} */
let browser;

before(async () => {
  checkPrerequisites();
  server = await startServer({ DEMO_TOKEN_DELAY_MS: '5', DEMO_REPLY_TOKENS: '60' });
});

after(async () => {
  await server?.stop();
});

beforeEach(async () => {
  browser = await launchBrowser();
});

afterEach(async () => {
  await browser?.close();
});

/** @param {string} [path] */
async function openApp(path = '/') {
  const page = await browser.context.newPage();
  await page.goto(`${server.url}${path}`);
  await waitConnected(page);
  return page;
}

/** Ask each question in turn in one new conversation, each reply complete; returns its id. @param {Page} page @param {string[]} questions */
async function chat(page, questions) {
  await page.locator('[data-testid=new-chat]').click();
  await page.waitForFunction(() => location.hash === '');
  for (const [i, question] of questions.entries()) {
    await sendMessage(page, question);
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=message]').length === n, 2 * (i + 1), {
      timeout: TIMEOUT,
    });
    await waitReply(page, { status: 'complete' });
  }
  return conversationId(page);
}

/** Type a query into the search box. @param {Page} page @param {string} query */
async function search(page, query) {
  const box = page.locator('[data-testid=search]');
  await box.fill(query);
  return box;
}

/** The search results shown: message id, title and snippet (text, and the highlighted words). @param {Page} page */
function shownResults(page) {
  return page.$$eval('[data-testid=search-result]', (els) =>
    els.map((el) => ({
      id: el.getAttribute('data-id'),
      title: el.querySelector('.result-title')?.textContent ?? '',
      snippet: el.querySelector('.snippet')?.textContent ?? '',
      marks: Array.from(el.querySelectorAll('.snippet mark')).map((m) => m.textContent),
    })),
  );
}

/** Whether the message is inside the visible part of the message list. @param {Page} page @param {string} id */
function inView(page, id) {
  return page.evaluate((id) => {
    const view = document.querySelector('.messages')?.getBoundingClientRect();
    const box = document.querySelector(`[data-testid=message][data-id="${id}"]`)?.getBoundingClientRect();
    return Boolean(view && box && box.top >= view.top - 1 && box.top < view.bottom && box.bottom > view.top);
  }, id);
}

describe('search', () => {
  test('a Vietnamese word finds its message; Enter and a click open the conversation at it', async () => {
    const page = await openApp();
    // A small window, so that the matched message is scrolled out of view by what follows it.
    await page.setViewportSize({ width: 900, height: 420 });
    const question = 'Tôi muốn học tiếng Việt ở Huế';
    const vietnamese = await chat(page, [question, 'Tell me more', 'And then what happened next']);
    await chat(page, ['Something unrelated about pasta']);
    const target = (await api(page, 'GET', `/api/conversations/${vietnamese}`)).body.messages[0];
    assert.equal(target.content, question);

    // The box is reachable from the keyboard, and Enter opens the first result.
    await page.locator('[data-testid=search]').focus();
    const box = await search(page, 'tiếng');
    await page.locator(`[data-testid=search-result][data-id="${target.id}"]`).waitFor({ timeout: TIMEOUT });
    const [first] = await shownResults(page);
    assert.equal(first?.id, target.id);
    assert.equal(first?.title, question);
    assert.equal(first?.snippet, question, 'the snippet reads as the text, without markers');
    assert.deepEqual(first?.marks, ['tiếng']);
    await box.press('Enter');

    await page.waitForFunction(({ c, m }) => location.hash === `#/c/${c}/m/${m}`, { c: vietnamese, m: target.id });
    await page.locator(`[data-testid=message][data-id="${target.id}"][data-highlighted]`).waitFor({ timeout: TIMEOUT });
    assert.ok(await inView(page, target.id), 'the message is scrolled into view');
    assert.equal(await page.locator('[data-testid=message]').count(), 6);
    // The highlight is brief.
    await page.waitForSelector('[data-testid=message][data-highlighted]', { state: 'detached', timeout: 5_000 });

    // Scrolled away, a click on the result brings the message back into view.
    await page.evaluate(() => document.querySelector('.messages')?.scrollTo(0, 1e6));
    await page.waitForFunction(
      (id) => {
        const view = document.querySelector('.messages')?.getBoundingClientRect();
        const box = document.querySelector(`[data-testid=message][data-id="${id}"]`)?.getBoundingClientRect();
        return Boolean(view && box && box.bottom <= view.top + 1);
      },
      target.id,
    );
    // Diacritics need not be typed (SQLite).
    await search(page, 'tieng viet');
    await page.locator(`[data-testid=search-result][data-id="${target.id}"]`).waitFor({ timeout: TIMEOUT });
    await page.locator(`[data-testid=search-result][data-id="${target.id}"] a`).click();
    await page.locator(`[data-testid=message][data-id="${target.id}"][data-highlighted]`).waitFor({ timeout: TIMEOUT });
    assert.ok(await inView(page, target.id), 'the message is scrolled into view again');

    // Escape clears the search and the conversation list comes back.
    await box.press('Escape');
    assert.equal(await box.inputValue(), '');
    await page.locator(`[data-testid=conversation][data-id="${vietnamese}"]`).waitFor();
    assert.equal(await page.locator('[data-testid=search-results]').count(), 0);
  });

  test('no match, a hostile snippet, and a node that cannot search', async () => {
    const page = await openApp();
    await chat(page, ['Is <script>window.pwned = 1</script> zanzibarquux shown as text?']);

    await search(page, 'no-such-word-anywhere');
    await page.locator('[data-testid=search-note]', { hasText: 'No messages match' }).waitFor({ timeout: TIMEOUT });

    await search(page, 'zanzibarquux');
    await page.locator('[data-testid=search-result]').first().waitFor({ timeout: TIMEOUT });
    const results = await shownResults(page);
    assert.ok(results.length >= 1);
    assert.ok(results.every((r) => r.marks.includes('zanzibarquux')), JSON.stringify(results));
    const user = results.find((r) => r.snippet.includes('<script>'));
    assert.ok(user, `the snippet shows <script> as text: ${JSON.stringify(results)}`);
    assert.equal(await page.locator('.search-results script, .search-results img').count(), 0);
    assert.equal(await page.evaluate(() => /** @type {any} */ (window).pwned), undefined);

    // A node without a durable store answers 503 `unavailable`.
    await page.route('**/api/search?**', (route) =>
      route.fulfill({
        status: 503,
        contentType: 'application/json',
        body: JSON.stringify({ error: { code: 'unavailable', message: 'search needs a durable store' } }),
      }),
    );
    await search(page, 'anything else');
    await page
      .locator('[data-testid=search-note]', { hasText: 'Search is not available on this server' })
      .waitFor({ timeout: TIMEOUT });
  });
});

describe('the conversation list', () => {
  test('loads 50 at first and more as it scrolls, newest first, each once', async () => {
    const page = await openApp();
    const total = 57;
    for (let i = 1; i <= total; i++) {
      const { status } = await api(page, 'POST', '/api/conversations', { title: `Bulk ${String(i).padStart(2, '0')}` });
      assert.equal(status, 201);
    }
    await page.reload();
    await waitConnected(page);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=conversation]').length === 50);
    await page.locator('[data-testid=show-more]').waitFor();

    // Scrolling to the end of the list loads the rest.
    await page.locator('[data-testid=show-more]').scrollIntoViewIfNeeded();
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=conversation]').length === n, total, {
      timeout: TIMEOUT,
    });
    await page.locator('[data-testid=show-more]').waitFor({ state: 'detached' });
    const listed = await listedConversations(page);
    const expected = Array.from({ length: total }, (_, i) => `Bulk ${String(total - i).padStart(2, '0')}`);
    assert.deepEqual(
      listed.map((c) => c.title),
      expected,
    );
    assert.equal(new Set(listed.map((c) => c.id)).size, total);

    // A new conversation goes to the top, and nothing is listed twice.
    await chat(page, ['A fresh one']);
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=conversation]').length === n, total + 1, {
      timeout: TIMEOUT,
    });
    const after = await listedConversations(page);
    assert.equal(after[0]?.title, 'A fresh one');
    assert.deepEqual(
      after.slice(1).map((c) => c.title),
      expected,
    );
    assert.equal(new Set(after.map((c) => c.id)).size, total + 1);
  });
});
