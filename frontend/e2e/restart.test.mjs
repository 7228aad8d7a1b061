// The embedded node keeps its history (SQLite) and its generated secrets in
// DATA_DIR. Here a page chats in three conversations, one of them mid-reply,
// while the node is stopped (SIGTERM, then in a second case kill -9) and
// started again on the same DATA_DIR and port: the open page reconnects by
// itself and everything is still there, for the same guest.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import {
  conversationId,
  identity,
  listedConversations,
  sendMessage,
  serverConversation,
  shownMessages,
  waitConnected,
  waitReply,
} from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

const TIMEOUT = 20_000;
const REPLY_TOKENS = 100;

/** The node's settings: no AUTH_SECRET or ADMIN_TOKEN, so it generates them and keeps them in DATA_DIR. */
const settings = (/** @type {string} */ dataDir) => ({
  DATA_DIR: dataDir,
  AUTH_SECRET: undefined,
  ADMIN_TOKEN: undefined,
  DEMO_TOKEN_DELAY_MS: '30',
  DEMO_REPLY_TOKENS: String(REPLY_TOKENS),
});

/** @type {string} */
let dataDir;
/** @type {Awaited<ReturnType<typeof startServer>> | undefined} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>> | undefined} */
let browser;

beforeEach(async () => {
  checkPrerequisites();
  // This directory is the test's: the harness reuses it across restarts and never removes it.
  dataDir = await mkdtemp(path.join(tmpdir(), 'chatstream-e2e-restart-'));
  server = await startServer(settings(dataDir));
  browser = await launchBrowser();
});

afterEach(async () => {
  await browser?.close();
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/** Start a new chat and ask `question`. @param {import('playwright-core').Page} page @param {string} question */
async function newChat(page, question) {
  const before = page.url();
  await page.locator('[data-testid=new-chat]').click();
  await page.waitForFunction(() => location.hash === '');
  await sendMessage(page, question);
  await page.waitForFunction((before) => location.href !== before && location.hash.startsWith('#/c/'), before, {
    timeout: TIMEOUT,
  });
  return conversationId(page);
}

/** Open a conversation from the sidebar and wait for its messages. @param {import('playwright-core').Page} page @param {string} id @param {number} count */
async function openFromList(page, id, count) {
  await page.locator(`[data-testid=conversation][data-id="${id}"] a`).click();
  await page.waitForFunction((id) => location.hash === `#/c/${id}`, id);
  await page.waitForFunction(
    (count) => {
      const shown = document.querySelectorAll('[data-testid=message]');
      return shown.length === count && Array.from(shown).every((el) => el.getAttribute('data-status') !== 'streaming');
    },
    count,
    { timeout: TIMEOUT },
  );
}

const words = (/** @type {string} */ text) => text.trim().split(/\s+/).length;

describe('the conversation list after a node restart', () => {
  for (const [how, signal] of /** @type {const} */ ([
    ['stopped (SIGTERM)', 'stop'],
    ['killed (kill -9)', 'kill'],
  ])) {
    test(`everything is there after the node is ${how} and started again on the same DATA_DIR and port`, async () => {
      assert.ok(server && browser);
      const page = await browser.context.newPage();
      await page.goto(server.url);
      await waitConnected(page);

      // Two finished conversations, and a third whose reply streams through the restart.
      const questions = ['Plan a trip to Hà Nội in spring', 'Which herbs go with basil?', 'Tell me a long story about restarts'];
      const first = await newChat(page, questions[0]);
      await waitReply(page, { status: 'complete' });
      const second = await newChat(page, questions[1]);
      await waitReply(page, { status: 'complete' });
      const third = await newChat(page, questions[2]);
      const beforeRestart = await waitReply(page, { longerThan: 20, status: 'streaming' });
      const ids = [third, second, first];
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid=conversation]').length === n, ids.length);
      const listed = await listedConversations(page);
      assert.deepEqual(listed.map((c) => c.id), ids, 'newest first');
      assert.deepEqual(listed.map((c) => c.title), [...questions].reverse());
      const held = await Promise.all([first, second].map((id) => serverConversation(page, id)));
      const who = await identity(page);
      assert.equal(who.sub, who.userId);

      // The same node, stopped and started again; the open page is left alone.
      const { port } = server;
      const stopping = Date.now();
      await (signal === 'stop' ? server.stop() : server.kill());
      const stopped = Date.now();
      await page.waitForSelector('[data-testid=connection]:not([data-state=connected])', { timeout: TIMEOUT });
      server = await startServer(settings(dataDir), { port });
      const started = Date.now();

      // The page reconnects by itself, and the interrupted reply completes.
      await waitConnected(page);
      const reconnected = Date.now();
      const done = await waitReply(page, { status: 'complete' });
      console.log(
        `${how}: stopped in ${stopped - stopping} ms, answering again on port ${port} after ${started - stopping} ms, ` +
          `page reconnected after ${reconnected - stopping} ms, reply complete after ${Date.now() - stopping} ms`,
      );
      assert.equal(await conversationId(page), third);
      const stored = (await serverConversation(page, third)).messages;
      assert.deepEqual(
        stored.map((m) => [m.role, m.status]),
        [
          ['user', 'complete'],
          ['assistant', 'complete'],
        ],
      );
      // Raw content (the Markdown source) is compared, not the rendered text, which drops the syntax.
      assert.equal(done.text, stored[1]?.content);
      assert.equal(words(done.text), REPLY_TOKENS, 'the whole reply');
      assert.ok(done.text.startsWith(beforeRestart.text), 'the text shown before the restart is kept');

      // Every conversation is listed with its title, newest first.
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid=conversation]').length === n, ids.length);
      assert.deepEqual(await listedConversations(page), listed);

      // Opening each shows every message with its text, as before the restart.
      for (const [i, id] of [first, second].entries()) {
        await openFromList(page, id, 2);
        const before = /** @type {NonNullable<typeof held[number]>} */ (held[i]).messages;
        assert.deepEqual(
          (await shownMessages(page)).map((m) => [m.role, m.text]),
          before.map((m) => [m.role, m.content]),
        );
      }
      await openFromList(page, third, 2);
      assert.deepEqual(
        (await shownMessages(page)).map((m) => [m.role, m.text]),
        stored.map((m) => [m.role, m.content]),
      );

      // The same guest: no new identity, nothing said about one.
      const after = await identity(page);
      assert.equal(after.sub, who.sub, 'the token is for the same user');
      assert.equal(after.userId, who.userId);
      assert.equal(await page.locator('[data-testid=notice][data-code=unauthorized]').count(), 0);
      const body = (await page.locator('body').textContent()) ?? '';
      assert.doesNotMatch(body, /new guest identity|session expired|signed in again/i);

      // The reply interrupted by the restart reads as an undisturbed run of the demo model.
      const control = await newChat(page, questions[2]);
      const undisturbed = await waitReply(page, { status: 'complete' });
      assert.notEqual(control, third);
      assert.equal(done.text, undisturbed.text, 'the same text as an undisturbed reply');
      assert.equal(done.shown, undisturbed.shown, 'rendered the same as an undisturbed reply');
    });
  }
});
