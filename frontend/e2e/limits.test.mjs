// Messages over the contract's limits (32,000 characters of content, 65,536
// bytes of UTF-8 for the whole frame) are not sent: the page says so and
// keeps the draft, a 1009 close is never answered by sending the same frame
// again, and every error code reads as a sentence.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { conversationId, sendMessage, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */

/** 25,000 Chinese characters: under 32,000 characters, but 75,000 bytes of UTF-8. */
const CHINESE = '流式传输让回复逐字出现'.repeat(2_500);
/** Vietnamese with its marks, two to three bytes a letter: 38,000 characters, about 67 KB. */
const VIETNAMESE = 'Tiếng Việt có dấu: ằ ắ ẳ ẵ ặ ề ế ể ễ ệ ờ ớ ở ỡ ợ ừ ứ ử ữ ự. '.repeat(700).slice(0, 38_000);
/** A paste of 40,000 characters. */
const LONG_PASTE = 'Một đoạn văn dài được dán vào. '.repeat(1_300).slice(0, 40_000);

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>>} */
let browser;

before(async () => {
  checkPrerequisites();
  server = await startServer();
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
 * The page's WebSocket traffic, counted from the outside: connections opened
 * and `send` frames written.
 * @param {Page} page
 */
function watchSockets(page) {
  const traffic = { connections: 0, sends: 0 };
  page.on('websocket', (ws) => {
    traffic.connections++;
    ws.on('framesent', ({ payload }) => {
      if (typeof payload === 'string' && payload.startsWith('{"type":"send"')) traffic.sends++;
    });
  });
  return traffic;
}

/** @param {string} [path] @param {{ url: string }} [node] */
async function openApp(path = '/', node = server) {
  const page = await browser.context.newPage();
  const traffic = watchSockets(page);
  await page.goto(node.url + path);
  await waitConnected(page);
  return { page, traffic };
}

/** @param {Page} page */
const draft = (page) => page.locator('[data-testid=composer]').inputValue();

/**
 * Nothing happens on the socket for a while: no `send`, no new connection.
 * @param {Page} page @param {{ connections: number, sends: number }} traffic
 */
async function assertQuiet(page, traffic, ms = 3_000) {
  const before = { ...traffic };
  await page.waitForTimeout(ms);
  assert.deepEqual(traffic, before, 'no frame sent and no reconnection');
  assert.equal(await page.locator('[data-testid=connection]').getAttribute('data-state'), 'connected');
}

describe('message limits', () => {
  test('25,000 Chinese characters (75 KB of UTF-8) are not sent: a counter, a message, the draft kept', async () => {
    const { page, traffic } = await openApp();
    const composer = page.locator('[data-testid=composer]');
    await composer.fill(CHINESE);
    const counter = page.locator('[data-testid=composer-counter]');
    assert.match((await counter.textContent()) ?? '', /KB/);
    const limit = page.locator('[data-testid=composer-limit]');
    assert.match((await limit.textContent()) ?? '', /too large to send.*64 KB/);
    assert.ok(await page.locator('[data-testid=send]').isDisabled(), 'Send is disabled');

    await composer.press('Enter');
    await page.locator('[data-testid=send]').click({ force: true });
    await assertQuiet(page, traffic);
    assert.equal(traffic.sends, 0);
    assert.equal(await draft(page), CHINESE, 'the draft is intact');
    assert.ok(await limit.isVisible(), 'the message stays');
    assert.equal(await page.locator('[data-testid=message]').count(), 0, 'no "Sending…" bubble');

    // Shortened under the limit, it goes.
    await composer.fill(CHINESE.slice(0, 20_000));
    assert.equal(await limit.count(), 0);
    await composer.press('Enter');
    await conversationId(page);
    await waitReply(page, { status: 'complete' });
    assert.equal(traffic.sends, 1);
  });

  test('a Vietnamese text over the limits is not sent, and says how much to cut', async () => {
    const { page, traffic } = await openApp();
    assert.ok(Buffer.byteLength(VIETNAMESE) > 65_536, 'the text is over the byte limit');
    const composer = page.locator('[data-testid=composer]');
    await composer.fill(VIETNAMESE);
    const limit = page.locator('[data-testid=composer-limit]');
    assert.match((await limit.textContent()) ?? '', /longer than 32,000 characters.*shorten it by 6,000 characters/);
    await composer.press('Enter');
    await assertQuiet(page, traffic);
    assert.equal(await draft(page), VIETNAMESE);
  });

  test('a paste of 40,000 characters is kept whole, with a message, not cut to 32,000', async () => {
    const { page, traffic } = await openApp();
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    await page.evaluate((text) => navigator.clipboard.writeText(text), LONG_PASTE);
    const composer = page.locator('[data-testid=composer]');
    await composer.focus();
    await page.keyboard.press('Control+V');
    await page.waitForFunction(() => /** @type {HTMLTextAreaElement} */ (document.querySelector('[data-testid=composer]')).value.length > 0);
    assert.equal((await draft(page)).length, 40_000, 'everything pasted is there');
    assert.match((await page.locator('[data-testid=composer-counter]').textContent()) ?? '', /40,000 \/ 32,000 characters/);
    assert.match((await page.locator('[data-testid=composer-limit]').textContent()) ?? '', /Nothing was cut.*8,000 characters/);
    await composer.press('Enter');
    await assertQuiet(page, traffic, 1_000);
    assert.equal((await draft(page)).length, 40_000);
  });

  test('every error code reads as a sentence, never the code', async () => {
    const page = await browser.context.newPage();
    // Hand the page's socket to the test, to play error frames to the client.
    await page.addInitScript(() => {
      const Native = window.WebSocket;
      /** @type {WebSocket[]} */
      const sockets = [];
      Object.assign(window, { __sockets: sockets });
      window.WebSocket = class extends Native {
        /** @param {ConstructorParameters<typeof WebSocket>} args */
        constructor(...args) {
          super(...args);
          sockets.push(this);
        }
      };
    });
    await page.goto(server.url);
    await waitConnected(page);
    const codes = ['too_large', 'rate_limited', 'conflict', 'unavailable', 'forbidden', 'not_found', 'bad_request', 'internal'];
    for (const code of codes) {
      for (const message of [code, '']) {
        await page.evaluate(
          ({ code, message }) => {
            const sockets = /** @type {WebSocket[]} */ (/** @type {any} */ (window).__sockets);
            const frame = JSON.stringify({ type: 'error', code, message });
            sockets.at(-1)?.onmessage?.(new MessageEvent('message', { data: frame }));
          },
          { code, message },
        );
        const notice = page.locator(`[data-testid=notice][data-code=${code}]`);
        await notice.waitFor();
        const text = ((await notice.textContent()) ?? '').trim();
        assert.match(text, /^[A-Z].{15,}[.!…]$/, `${code} (${JSON.stringify(message)}): "${text}"`);
        assert.doesNotMatch(text, /_|[{}]/, `${code}: no code or JSON in "${text}"`);
        await notice.getByRole('button', { name: 'Dismiss' }).click();
        await notice.waitFor({ state: 'detached' });
      }
    }
  });
});

describe('a frame the server refuses (close 1009)', () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let small;
  before(async () => {
    // A node whose frame limit is lower than the contract's: the page cannot know it before the close.
    small = await startServer({ MAX_FRAME_BYTES: '16384', MAX_CONVERSATIONS_PER_USER: '1' });
  });
  after(async () => {
    await small?.stop();
  });

  test('is not sent again: the text comes back with a message, and the page reconnects once', async () => {
    const { page, traffic } = await openApp('/', small);
    const text = '分'.repeat(10_000); // 30 KB: under 64 KiB, over this node's 16 KiB
    await sendMessage(page, text);
    const notice = page.locator('[data-testid=notice][data-code=frame_too_large]');
    await notice.waitFor();
    assert.match((await notice.textContent()) ?? '', /too large for the server/);
    await waitConnected(page);
    await page.waitForFunction((length) => {
      const area = /** @type {HTMLTextAreaElement} */ (document.querySelector('[data-testid=composer]'));
      return area.value.length === length;
    }, text.length);
    assert.equal(await draft(page), text, 'the text is back in the message box');

    // The reconnect does not resend it, and nothing loops.
    await assertQuiet(page, traffic, 4_000);
    assert.deepEqual(traffic, { connections: 2, sends: 1 });
    assert.equal(await page.locator('[data-testid=message][data-status=sending]').count(), 0, 'no bubble stuck on "Sending…"');

    // A message of a size the node takes still goes.
    await sendMessage(page, 'A short one');
    await waitReply(page, { status: 'complete' });

    // The node's own `too_large` (one conversation per user here) is shown as its sentence.
    await page.locator('[data-testid=new-chat]').click();
    await sendMessage(page, 'A second conversation');
    const refused = page.locator('[data-testid=notice][data-code=too_large]');
    await refused.waitFor();
    const sentence = ((await refused.textContent()) ?? '').trim();
    assert.match(sentence, /^[A-Z].+[.!]$/);
    assert.doesNotMatch(sentence, /too_large/);
  });
});
