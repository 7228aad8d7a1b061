// The view follows a streaming reply to the bottom on every turn, at desktop
// and phone sizes, and leaves a reader who scrolled up where they are.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { sendMessage, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
/** Five or more turns, each reply taller than the window. */
const TURNS = 5;

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>>} */
let browser;

before(async () => {
  checkPrerequisites();
  // Long replies (taller than a desktop window), written quickly.
  server = await startServer({ DEMO_REPLY_TOKENS: '900', DEMO_TOKEN_DELAY_MS: '3' });
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

/**
 * Where the last message ends, against the visible part of the list: its
 * bottom must be on screen (not below the list's bottom edge, under the composer).
 * @param {Page} page
 */
function lastMessageGeometry(page) {
  return page.evaluate(() => {
    const list = /** @type {HTMLElement} */ (document.querySelector('.messages'));
    const messages = list.querySelectorAll('[data-testid=message]');
    const last = /** @type {HTMLElement} */ (messages[messages.length - 1]);
    const view = list.getBoundingClientRect();
    const box = last.getBoundingClientRect();
    return {
      lastBottom: box.bottom,
      viewTop: view.top,
      viewBottom: view.bottom,
      replyHeight: box.height,
      windowHeight: window.innerHeight,
      status: last.getAttribute('data-status'),
      jumpShown: document.querySelector('.jump') !== null,
    };
  });
}

/** @param {Awaited<ReturnType<typeof lastMessageGeometry>>} g @param {string} when */
function assertLastInView(g, when) {
  assert.ok(
    g.lastBottom <= g.viewBottom + 1 && g.lastBottom >= g.viewTop,
    `${when}: the last message ends at ${g.lastBottom}px, the list shows ${g.viewTop}–${g.viewBottom}px`,
  );
  assert.equal(g.jumpShown, false, `${when}: no "Jump to latest" while following`);
}

/** @param {{ width: number, height: number }} viewport */
async function followsEveryTurn(viewport) {
  const page = await browser.context.newPage();
  await page.setViewportSize(viewport);
  await page.goto(server.url);
  await waitConnected(page);
  for (let turn = 1; turn <= TURNS; turn++) {
    await sendMessage(page, `Question number ${turn}: tell me a long story about streams`);
    // Mid-reply, once the "Sending…" bubble was replaced by the real message.
    await waitReply(page, { longerThan: 400, status: 'streaming' });
    assertLastInView(await lastMessageGeometry(page), `turn ${turn}, streaming`);
    await waitReply(page, { status: 'complete' });
    // The page settles on the reply's final height (its actions row appears) first.
    await page.waitForTimeout(100);
    const done = await lastMessageGeometry(page);
    assert.ok(done.replyHeight > done.windowHeight, `turn ${turn}: the reply (${done.replyHeight}px) is taller than the window`);
    assertLastInView(done, `turn ${turn}, complete`);
  }
}

describe('auto-follow', () => {
  test('follows the reply to the bottom on every turn at desktop size', async () => {
    await followsEveryTurn(DESKTOP);
  });

  test('follows the reply to the bottom on every turn at phone size', async () => {
    await followsEveryTurn(PHONE);
  });

  test('a reader who scrolls up mid-reply stays there and is offered "Jump to latest"', async () => {
    const page = await browser.context.newPage();
    await page.setViewportSize(DESKTOP);
    await page.goto(server.url);
    await waitConnected(page);
    // A conversation already taller than the window, then a new turn.
    await sendMessage(page, 'A first long answer please');
    await waitReply(page, { status: 'complete' });
    await sendMessage(page, 'And a second one');
    const { text } = await waitReply(page, { longerThan: 300, status: 'streaming' });

    // Scroll up as a person does: the mouse wheel over the list.
    const list = page.locator('.messages');
    await list.hover();
    await page.mouse.wheel(0, -600);
    await page.getByRole('button', { name: 'Jump to latest' }).waitFor();
    const top = await list.evaluate((el) => el.scrollTop);
    await waitReply(page, { longerThan: text.length + 300 });
    assert.equal(await list.evaluate((el) => el.scrollTop), top, 'the view stays where the reader left it');
    assert.ok(await page.getByRole('button', { name: 'Jump to latest' }).isVisible());

    await page.getByRole('button', { name: 'Jump to latest' }).click();
    await waitReply(page, { status: 'complete' });
    await page.waitForTimeout(100);
    assertLastInView(await lastMessageGeometry(page), 'after "Jump to latest"');
  });

  test('a keyboard user scrolls the list from inside it (no tab stop of its own)', async () => {
    const page = await browser.context.newPage();
    await page.setViewportSize(DESKTOP);
    await page.goto(server.url);
    await waitConnected(page);
    await sendMessage(page, 'A long answer to read with the keyboard');
    await waitReply(page, { status: 'complete' });
    const list = page.locator('.messages');
    assert.equal(await list.getAttribute('role'), 'log');
    assert.equal(await list.getAttribute('tabindex'), null);
    await page.locator('.messages [data-testid=message][data-role=assistant] button').last().waitFor();

    // From the message box, Shift+Tab lands on the last control in the list.
    await page.getByTestId('composer').focus();
    await page.keyboard.press('Shift+Tab');
    assert.ok(await page.evaluate(() => document.querySelector('.messages')?.contains(document.activeElement) ?? false));
    const bottom = await list.evaluate((el) => el.scrollTop);
    assert.ok(bottom > 0, 'the list is taller than its view');

    // PageUp scrolls the list (and the view stops following); End takes it back down.
    await page.keyboard.press('PageUp');
    await page.waitForFunction((bottom) => (document.querySelector('.messages')?.scrollTop ?? bottom) < bottom - 100, bottom);
    await page.getByRole('button', { name: 'Jump to latest' }).waitFor();
    await page.keyboard.press('End');
    await page.waitForFunction(() => {
      const el = document.querySelector('.messages');
      return el !== null && el.scrollHeight - el.scrollTop - el.clientHeight < 2;
    });
    await page.getByRole('button', { name: 'Jump to latest' }).waitFor({ state: 'detached' });
  });
});
