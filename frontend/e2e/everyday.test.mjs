// Small things of everyday use: suggestions, Enter during a reply, a second
// tab's list, the header, and the UI in English and Vietnamese.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { conversationId, sendMessage, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>> | undefined} */
let browser;

before(async () => {
  checkPrerequisites();
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

afterEach(async () => {
  await browser?.close();
  browser = undefined;
});

/** @param {Parameters<typeof launchBrowser>[0]} [options] */
async function openApp(path = '/', options = {}) {
  browser ??= await launchBrowser(options);
  const page = await browser.context.newPage();
  await page.goto(server.url + path);
  await waitConnected(page);
  return page;
}

/** @param {Page} page */
const listedIds = (page) => page.$$eval('[data-testid=conversation]', (els) => els.map((el) => el.getAttribute('data-id')));

describe('everyday use', () => {
  beforeEach(async () => {
    browser = await launchBrowser();
  });

  test('a suggestion fills the message box and focuses it: Enter sends it', async () => {
    const page = await openApp();
    // Focus elsewhere first, as after reading the page.
    await page.locator('[data-testid=search]').focus();
    const suggestion = page.locator('[data-testid=suggestion]').first();
    const text = ((await suggestion.textContent()) ?? '').trim();
    await suggestion.click();
    const focused = await page.evaluate(() => document.activeElement?.getAttribute('data-testid'));
    assert.equal(focused, 'composer', 'the message box has the focus');
    assert.equal(await page.locator('[data-testid=composer]').inputValue(), text);
    await page.keyboard.press('Enter');
    await conversationId(page);
    const first = page.locator('[data-testid=message][data-role=user] .markdown').first();
    await first.waitFor();
    assert.equal(((await first.textContent()) ?? '').trim(), text);
  });

  test('Enter while a reply streams says to wait or press Stop, and keeps the draft', async () => {
    const page = await openApp();
    await sendMessage(page, 'Write something long');
    await waitReply(page, { longerThan: 10, status: 'streaming' });
    const composer = page.locator('[data-testid=composer]');
    await composer.fill('The next question');
    await composer.press('Enter');
    const hint = page.locator('[data-testid=composer-wait]');
    await hint.waitFor();
    assert.equal(((await hint.textContent()) ?? '').trim(), 'Wait for the reply to finish, or press Stop.');
    assert.equal(await hint.getAttribute('role'), 'status');
    assert.equal(await composer.inputValue(), 'The next question');
    await waitReply(page, { status: 'complete' });
    await hint.waitFor({ state: 'detached' });
    await composer.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=message]').length >= 3);
  });

  test("a second tab's list follows conversations created and deleted in another tab", async () => {
    const first = await openApp();
    const second = await openApp();
    await second.locator('.list-note').waitFor();
    assert.deepEqual(await listedIds(second), []);

    await first.bringToFront();
    await sendMessage(first, 'Made in the first tab');
    const id = await conversationId(first);
    // No focus change in the second tab: the first one tells it.
    await second.waitForFunction(
      (id) => document.querySelector(`[data-testid=conversation][data-id="${id}"]`) !== null,
      id,
      { timeout: 5_000 },
    );
    await waitReply(first, { status: 'complete' });

    await first.locator(`[data-testid=conversation][data-id="${id}"] button.delete`).click();
    await first.locator('[data-testid=confirm-delete]').click();
    await second.waitForFunction(() => document.querySelectorAll('[data-testid=conversation]').length === 0, null, {
      timeout: 5_000,
    });
  });

  test('the header does not show the node; its tooltip does', async () => {
    const page = await openApp();
    const header = ((await page.locator('.chat-header').textContent()) ?? '').trim();
    assert.doesNotMatch(header, /node/i);
    const connection = page.locator('[data-testid=connection]');
    assert.equal(((await connection.textContent()) ?? '').trim(), 'Connected');
    assert.equal(await connection.getAttribute('title'), 'Connected to node e2e-node');
  });
});

describe('languages', () => {
  test('a Vietnamese browser gets the UI in Vietnamese; English can be chosen and is remembered', async () => {
    const page = await openApp('/', { locale: 'vi-VN' });
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'vi');
    assert.equal(await page.locator('[data-testid=composer]').getAttribute('placeholder'), 'Nhắn tin cho chatstream');
    assert.equal(((await page.locator('.empty h2').textContent()) ?? '').trim(), 'Tôi có thể giúp gì cho bạn?');
    assert.equal(((await page.locator('[data-testid=new-chat]').textContent()) ?? '').trim(), 'Cuộc trò chuyện mới');
    assert.equal(((await page.locator('[data-testid=connection]').textContent()) ?? '').trim(), 'Đã kết nối');
    assert.equal(await page.locator('[data-testid=language]').inputValue(), 'vi');

    // A turn in Vietnamese, and a limit message in Vietnamese.
    await sendMessage(page, 'Xin chào, hãy giải thích cơ chế backpressure');
    await waitReply(page, { status: 'complete' });
    await page.locator('[data-testid=composer]').fill('字'.repeat(25_000));
    assert.match((await page.locator('[data-testid=composer-limit]').textContent()) ?? '', /quá lớn để gửi/);
    await page.locator('[data-testid=composer]').fill('');

    await page.locator('[data-testid=language]').selectOption('en');
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    assert.equal(await page.locator('[data-testid=composer]').getAttribute('placeholder'), 'Message chatstream');
    assert.equal(((await page.locator('[data-testid=new-chat]').textContent()) ?? '').trim(), 'New chat');

    await page.reload();
    await waitConnected(page);
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    assert.equal(await page.locator('[data-testid=composer]').getAttribute('placeholder'), 'Message chatstream');
    assert.equal(await page.evaluate(() => localStorage.getItem('chatstream.language')), 'en');

    // And back: Vietnamese, remembered too.
    await page.locator('[data-testid=language]').selectOption('vi');
    await page.reload();
    await waitConnected(page);
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'vi');
    assert.equal(((await page.locator('.messages').getAttribute('aria-label')) ?? ''), 'Tin nhắn');
  });

  test('an English browser gets English', async () => {
    const page = await openApp('/', { locale: 'en-GB' });
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    assert.equal(((await page.locator('.empty h2').textContent()) ?? '').trim(), 'What can I help with?');
  });
});
