// Renaming a conversation (PATCH /api/conversations/{id}, in the sidebar's
// list and in the header), exporting it (Markdown: the active path; JSON:
// the whole tree as GET answers it), and errors in the UI's language: a
// Vietnamese reader never sees the server's English sentence.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, afterEach, before, describe, test } from 'node:test';
import { api, conversationId, listedConversations, sendMessage, serverConversation, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */

/** An English sentence as a node writes them: it must never reach a Vietnamese screen. */
const ENGLISH = 'The server could not do that right now, please try again.';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>> | undefined} */
let browser;

before(async () => {
  checkPrerequisites();
  server = await startServer({ DEMO_TOKEN_DELAY_MS: '5' });
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

/** Starts a conversation and waits for its reply. @param {Page} page @param {string} text */
async function converse(page, text) {
  await sendMessage(page, text);
  const id = await conversationId(page);
  await waitReply(page, { status: 'complete' });
  await page.locator(`[data-testid=conversation][data-id="${id}"]`).waitFor();
  return id;
}

/** @param {Page} page @param {string} id */
const listedTitle = async (page, id) => (await listedConversations(page)).find((c) => c.id === id)?.title;

describe('rename', () => {
  test('from the list: the list, the header, the tab and the node show the new title, also after a reload', async () => {
    const page = await openApp();
    const id = await converse(page, 'Explain backpressure with an everyday example');
    const row = page.locator(`[data-testid=conversation][data-id="${id}"]`);
    await row.hover();
    await row.locator('[data-testid=rename]').click();
    const input = row.locator('[data-testid=rename-input]');
    assert.equal(await input.evaluate((el) => el === document.activeElement), true, 'the box has the focus');
    await input.fill('  Backpressure, explained  ');
    await input.press('Enter');
    await page.waitForFunction(
      (id) => document.querySelector(`[data-testid=conversation][data-id="${id}"] a`)?.textContent === 'Backpressure, explained',
      id,
    );
    assert.equal(await page.locator('.chat-title').textContent(), 'Backpressure, explained');
    await page.waitForFunction(() => document.title.startsWith('Backpressure, explained'));
    assert.equal(/** @type {any} */ (await serverConversation(page, id)).title, 'Backpressure, explained');
    // Focus is back on the row's rename button.
    await page.waitForFunction((id) => document.activeElement === document.querySelector(`[data-id="${id}"] [data-testid=rename]`), id);

    await page.reload();
    await waitConnected(page);
    await page.locator(`[data-testid=conversation][data-id="${id}"]`).waitFor();
    assert.equal(await listedTitle(page, id), 'Backpressure, explained');
  });

  test('from the header; Escape keeps the title; an empty or too long title is refused before asking the node', async () => {
    const page = await openApp();
    const id = await converse(page, 'Tips for naming things in code');
    const before = await page.locator('.chat-title').textContent();
    /** @type {string[]} */
    const patches = [];
    page.on('request', (r) => r.method() === 'PATCH' && patches.push(r.url()));

    await page.locator('[data-testid=header-rename]').click();
    const input = page.locator('.chat-header [data-testid=rename-input]');
    await input.fill('Something else');
    await input.press('Escape');
    await input.waitFor({ state: 'detached' });
    assert.equal(await page.locator('.chat-title').textContent(), before);

    await page.locator('[data-testid=header-rename]').click();
    await input.fill('   ');
    await input.press('Enter');
    const problem = page.locator('[data-testid=rename-problem]');
    assert.equal(await problem.textContent(), 'A title cannot be empty.');
    assert.equal(await problem.getAttribute('role'), 'alert');
    assert.equal(await input.getAttribute('aria-invalid'), 'true');
    await input.fill('é'.repeat(201));
    await input.press('Enter');
    await page.waitForFunction(() => document.querySelector('[data-testid=rename-problem]')?.textContent === 'A title can be at most 200 characters.');
    assert.deepEqual(patches, [], 'nothing sent');

    await input.fill('Naming things');
    await input.press('Enter');
    await input.waitFor({ state: 'detached' });
    await page.waitForFunction(() => document.querySelector('.chat-title')?.textContent === 'Naming things');
    assert.equal(patches.length, 1);
    assert.equal(await listedTitle(page, id), 'Naming things');
  });

  test("a refusal is a sentence in the UI's language: Vietnamese from a real 404, never the node's English", async () => {
    const page = await openApp({ locale: 'vi-VN' });
    const id = await converse(page, 'Giải thích cơ chế backpressure');
    // Another conversation open: the first one's row stays listed when it is deleted elsewhere.
    await page.locator('[data-testid=new-chat]').click();
    await converse(page, 'Xin chào');
    const row = page.locator(`[data-testid=conversation][data-id="${id}"]`);
    await row.hover();
    await row.locator('[data-testid=rename]').click();
    // Deleted meanwhile (as from another device): the node answers 404 not_found, in English.
    assert.equal((await api(page, 'DELETE', `/api/conversations/${id}`)).status, 204);
    const answer = await api(page, 'PATCH', `/api/conversations/${id}`, { title: 'x' });
    assert.equal(answer.status, 404);
    const english = String(answer.body?.error?.message ?? '');
    await row.locator('[data-testid=rename-input]').fill('Tên mới');
    await row.locator('[data-testid=rename-input]').press('Enter');
    const problem = row.locator('[data-testid=rename-problem]');
    await problem.waitFor();
    const text = (await problem.textContent()) ?? '';
    assert.equal(text, 'Không thể đổi tên cuộc trò chuyện. Cuộc trò chuyện này không còn tồn tại.');
    if (english) assert.ok(!text.includes(english), `no English: ${text}`);
  });

  test('other codes, in English with the server sentence and in Vietnamese without it', async () => {
    for (const [locale, expected] of /** @type {const} */ ([
      ['en-US', `The conversation could not be renamed. ${ENGLISH}`],
      ['vi-VN', 'Không thể đổi tên cuộc trò chuyện. Tên này quá dài.'],
    ])) {
      const page = await openApp({ locale });
      const id = await converse(page, 'Hello there');
      await page.route(`**/api/conversations/${id}`, (route) =>
        route.request().method() === 'PATCH'
          ? route.fulfill({ status: 413, contentType: 'application/json', body: JSON.stringify({ error: { code: 'too_large', message: ENGLISH } }) })
          : route.fallback(),
      );
      await page.locator('[data-testid=header-rename]').click();
      await page.locator('[data-testid=rename-input]').fill('A title');
      await page.locator('[data-testid=rename-input]').press('Enter');
      const problem = page.locator('[data-testid=rename-problem]');
      await problem.waitFor();
      assert.equal(await problem.textContent(), expected);
      await browser?.close();
      browser = undefined;
    }
  });
});

describe('export', () => {
  test('as Markdown (the active path) and as JSON (the whole tree, as the node answers it)', async () => {
    const page = await openApp();
    const id = await converse(page, 'Explain binary search in Rust with a code example');
    await sendMessage(page, 'And in Python?');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=message]').length >= 4);
    await waitReply(page, { status: 'complete' });
    const stored = await serverConversation(page, id);

    /** @param {string} choice */
    const exported = async (choice) => {
      await page.locator('[data-testid=export]').click();
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator(`[data-testid=${choice}]`).click()]);
      return { name: download.suggestedFilename(), text: await readFile(/** @type {string} */ (await download.path()), 'utf8') };
    };

    const markdown = await exported('export-markdown');
    assert.match(markdown.name, /^[\p{L}\p{N}-]+\.md$/u);
    const title = (await page.locator('.chat-title').textContent()) ?? '';
    assert.ok(markdown.text.startsWith(`# ${title.replace(/([\\`*_{}[\]<>#|~])/g, '\\$1')}\n`), markdown.text.slice(0, 120));
    assert.equal(markdown.text.match(/^## You$/gm)?.length, 2);
    assert.equal(markdown.text.match(/^## Assistant/gm)?.length, 2);
    for (const message of stored.messages) assert.ok(markdown.text.includes(message.content.trimEnd()), `has ${message.id}`);
    // Its code blocks are whole: every fence closed.
    assert.equal((markdown.text.match(/^```/gm)?.length ?? 0) % 2, 0);

    const json = await exported('export-json');
    assert.match(json.name, /\.json$/);
    const document = JSON.parse(json.text);
    assert.equal(document.format, 'chatstream.conversation');
    assert.equal(document.id, id);
    assert.deepEqual(document.messages, stored.messages);
    assert.deepEqual(document.branches, /** @type {any} */ (stored).branches ?? []);
    assert.ok(Array.isArray(document.branches));
  });

  test('a failed export says why, in Vietnamese', async () => {
    const page = await openApp({ locale: 'vi-VN' });
    const id = await converse(page, 'Xin chào');
    await page.route(`**/api/conversations/${id}`, (route) =>
      route.request().method() === 'GET'
        ? route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'unavailable', message: ENGLISH } }) })
        : route.fallback(),
    );
    await page.locator('[data-testid=export]').click();
    await page.locator('[data-testid=export-json]').click();
    const problem = page.locator('[data-testid=export-problem]');
    await problem.waitFor();
    assert.equal(await problem.textContent(), 'Không thể xuất cuộc trò chuyện. Máy chủ tạm thời không khả dụng. Hãy thử lại sau giây lát.');
  });
});

describe("errors in the UI's language", () => {
  test("a Vietnamese UI shows its own sentence for every code, never the node's English message", async () => {
    browser = await launchBrowser({ locale: 'vi-VN' });
    const page = await browser.context.newPage();
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

    // Error frames on the socket, each with an English sentence.
    for (const code of ['too_large', 'rate_limited', 'conflict', 'unavailable', 'forbidden', 'not_found', 'bad_request', 'internal']) {
      await page.evaluate(
        ({ code, message }) => {
          const sockets = /** @type {WebSocket[]} */ (/** @type {any} */ (window).__sockets);
          sockets.at(-1)?.onmessage?.(new MessageEvent('message', { data: JSON.stringify({ type: 'error', code, message }) }));
        },
        { code, message: ENGLISH },
      );
      const notice = page.locator(`[data-testid=notice][data-code=${code}]`);
      await notice.waitFor();
      const text = ((await notice.textContent()) ?? '').trim();
      assert.ok(!text.includes(ENGLISH) && !/\b(the|server|please)\b/i.test(text), `${code}: "${text}"`);
      assert.match(text, /[ạảãàáâậầấẩẫăắằặẳẵêềếểễệôồốổỗộơờớởỡợưừứửữựđ]/, `${code} in Vietnamese: "${text}"`);
      await notice.getByRole('button').click();
      await notice.waitFor({ state: 'detached' });
    }

    // A delete the node refuses, with an English body.
    const id = await converse(page, 'Xin chào');
    await page.route(`**/api/conversations/${id}`, (route) =>
      route.request().method() === 'DELETE'
        ? route.fulfill({ status: 409, contentType: 'application/json', body: JSON.stringify({ error: { code: 'conflict', message: ENGLISH } }) })
        : route.fallback(),
    );
    const row = page.locator(`[data-testid=conversation][data-id="${id}"]`);
    await row.hover();
    await row.locator('button.delete').click();
    await page.locator('[data-testid=confirm-delete]').click();
    const deleteNotice = page.locator('[data-testid=notice][data-code=delete_failed]');
    await deleteNotice.waitFor();
    const deleteText = (await deleteNotice.textContent()) ?? '';
    assert.ok(!deleteText.includes(ENGLISH), deleteText);

    // A search the node refuses, with an English body.
    await page.route('**/api/search?**', (route) =>
      route.fulfill({ status: 500, contentType: 'application/json', body: JSON.stringify({ error: { code: 'internal', message: ENGLISH } }) }),
    );
    await page.locator('[data-testid=search]').fill('xin');
    await page.waitForFunction(() => /Tìm kiếm|tìm kiếm/.test(document.querySelector('#search-results')?.textContent ?? ''));
    const searchText = (await page.locator('#search-results').textContent()) ?? '';
    assert.ok(!searchText.includes(ENGLISH), searchText);
  });
});
