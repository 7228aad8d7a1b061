// Versions and branches (contract 1.2) in headless Chromium: Edit, Regenerate,
// Continue and ‹ 2/3 › against a real node; a reload, a second tab, a new
// question from an older branch; screenshots of a branched conversation.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { conversationId, sendMessage, serverConversation, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */
/** @typedef {{ id: string, role: string, text: string, status: string, version: string | null }} Shown */
/** @typedef {{ id: string, role: string, content: string, status: string, parent_id?: string | null }} WireMessage */

const TIMEOUT = 15_000;
const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const screenshots = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/screenshots');

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

/** Client frames each page sent (pings left out), recorded from its first socket on. */
const sentFrames = new WeakMap();

/** @param {string} [where] */
async function openApp(where = '/') {
  const page = await browser.context.newPage();
  /** @type {any[]} */
  const frames = [];
  sentFrames.set(page, frames);
  page.on('websocket', (ws) =>
    ws.on('framesent', ({ payload }) => {
      const frame = JSON.parse(String(payload));
      if (frame.type !== 'ping') frames.push(frame);
    }),
  );
  await page.goto(server.url + where);
  await waitConnected(page);
  return page;
}

/**
 * The client frames a page sent so far, by type.
 * @param {Page} page
 */
function recordFrames(page) {
  /** @type {any[]} */
  const frames = sentFrames.get(page);
  return { of: (/** @type {string} */ type) => frames.filter((f) => f.type === type) };
}

/** The messages shown, in order. @param {Page} page @returns {Promise<Shown[]>} */
function shown(page) {
  return page.$$eval('[data-testid=message]', (els) =>
    els.map((el) => ({
      id: el.getAttribute('data-id') ?? '',
      role: el.getAttribute('data-role') ?? '',
      text: el.getAttribute('data-content') ?? '',
      status: el.getAttribute('data-status') ?? '',
      version: el.getAttribute('data-version'),
    })),
  );
}

/**
 * Wait until the messages shown match: one entry per message, each a partial
 * `Shown` (`text` compared exactly); every reply finished unless said.
 * @param {Page} page @param {Partial<Shown>[]} expected
 */
async function waitShown(page, expected) {
  try {
    await page.waitForFunction(
      (expected) => {
        const els = Array.from(document.querySelectorAll('[data-testid=message]'));
        if (els.length !== expected.length) return false;
        return expected.every((want, i) => {
          const el = els[i];
          if (!el) return false;
          /** @type {Record<string, string | null>} */
          const got = {
            id: el.getAttribute('data-id'),
            role: el.getAttribute('data-role'),
            text: el.getAttribute('data-content'),
            status: el.getAttribute('data-status'),
            version: el.getAttribute('data-version'),
          };
          const status = want.status ?? (got.role === 'assistant' ? 'complete' : got.status);
          return got.status === status && Object.entries(want).every(([k, v]) => k === 'status' || got[k] === v);
        });
      },
      expected,
      { timeout: TIMEOUT },
    );
  } catch (error) {
    throw new Error(`${error}\nwanted ${JSON.stringify(expected)}\nshown ${JSON.stringify(await shown(page))}`);
  }
  return shown(page);
}

/** The message shown at `index`, as a locator. @param {Page} page @param {number} index */
const messageAt = (page, index) => page.locator('[data-testid=message]').nth(index);

/**
 * The conversation as the server holds it: the active path and the branches.
 * @param {Page} page @param {string} id
 * @returns {Promise<{ messages: WireMessage[], branches: WireMessage[] }>}
 */
async function serverTree(page, id) {
  const conversation = /** @type {any} */ (await serverConversation(page, id));
  return { messages: conversation.messages, branches: conversation.branches ?? [] };
}

/**
 * axe-core in the page (WCAG 2.x A and AA, best practices): no serious or critical violation.
 * @param {Page} page @param {string} where
 */
async function assertAccessible(page, where) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(axeSource);
  /** @type {{ id: string, impact: string, nodes: { target: string[] }[] }[]} */
  const violations = await page.evaluate(async () => {
    const result = await /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((/** @type {any} */ v) => ({
      id: v.id,
      impact: v.impact,
      nodes: v.nodes.map((/** @type {any} */ n) => ({ target: n.target })),
    }));
  });
  const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(serious, [], `${where}: ${JSON.stringify(serious)}`);
}

/** Ask one question in a new chat and wait for its reply. @param {Page} page @param {string} question */
async function ask(page, question) {
  await sendMessage(page, question);
  const id = await conversationId(page);
  const [, reply] = await waitShown(page, [{ role: 'user', text: question }, { role: 'assistant' }]);
  return { id, reply: /** @type {Shown} */ (reply) };
}

/** Edit the question at `index` to `text`, saved with Ctrl+Enter. @param {Page} page @param {number} index @param {string} text */
async function editQuestion(page, index, text) {
  const question = messageAt(page, index);
  await question.locator('[data-testid=edit]').click();
  const input = question.locator('[data-testid=edit-input]');
  await input.fill(text);
  await input.press('Control+Enter');
}

describe('versions and branches', () => {
  test('Edit creates a branch, and ‹ 2/2 › moves between the two versions with their replies', async () => {
    const page = await openApp();
    const frames = recordFrames(page);
    const { id, reply: first } = await ask(page, 'What is a branch?');
    const question = (await shown(page))[0];
    assert.ok(question);

    // Escape puts the message back as it was, and sends nothing.
    await messageAt(page, 0).locator('[data-testid=edit]').click();
    const input = messageAt(page, 0).locator('[data-testid=edit-input]');
    assert.equal(await input.evaluate((el) => el === document.activeElement), true, 'the editor takes the focus');
    assert.equal(await input.inputValue(), 'What is a branch?');
    await input.fill('never sent');
    await input.press('Escape');
    await waitShown(page, [{ text: 'What is a branch?', version: null }, { id: first.id }]);
    // The focus goes back to Edit.
    await page.waitForFunction(() => document.activeElement?.getAttribute('data-testid') === 'edit', null, { timeout: TIMEOUT });
    // Cancel too.
    await messageAt(page, 0).locator('[data-testid=edit]').click();
    await messageAt(page, 0).locator('[data-testid=edit-input]').fill('never sent either');
    await messageAt(page, 0).locator('[data-testid=edit-cancel]').click();
    await waitShown(page, [{ text: 'What is a branch?' }, { id: first.id }]);
    assert.equal(frames.of('edit').length, 0);

    await editQuestion(page, 0, 'What is a version?');
    const [edited, second] = await waitShown(page, [{ role: 'user', text: 'What is a version?', version: '2/2' }, { role: 'assistant' }]);
    assert.ok(edited && second);
    assert.notEqual(second.id, first.id);
    assert.notEqual(second.text, first.text, 'another question, another reply');
    const [edit] = frames.of('edit');
    for (const key of Object.keys(edit)) assert.ok(['type', 'id', 'message_id', 'content', 'client_msg_id', 'model'].includes(key), key);
    assert.equal(edit.message_id, question.id);
    assert.equal(edit.content, 'What is a version?');
    assert.match(edit.client_msg_id, /^[0-9a-f-]{36}$/);

    // ‹ goes back to the first question and its reply; › forward again.
    const nav = messageAt(page, 0).locator('[data-testid=branch-nav]');
    assert.equal(await nav.getAttribute('role'), 'group');
    assert.equal(await nav.getAttribute('aria-label'), 'Versions of this message');
    assert.equal(await nav.locator('[data-testid=branch-next]').getAttribute('aria-disabled'), 'true');
    await nav.getByRole('button', { name: 'Previous version' }).click();
    await waitShown(page, [{ id: question.id, text: 'What is a branch?', version: '1/2' }, { id: first.id, text: first.text }]);
    assert.equal(await nav.locator('[data-testid=branch-prev]').getAttribute('aria-disabled'), 'true');
    assert.equal((await nav.locator('[data-testid=branch-position]').textContent())?.includes('Version 1 of 2'), true);

    // By keyboard: the focused › stays focused as the version changes.
    await nav.getByRole('button', { name: 'Next version' }).focus();
    await page.keyboard.press('Enter');
    await waitShown(page, [{ id: edited.id, text: 'What is a version?', version: '2/2' }, { id: second.id, text: second.text }]);
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'branch-next');
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Space');
    await waitShown(page, [{ id: question.id, version: '1/2' }, { id: first.id }]);

    // The server holds both: the newest on the active path, the other as branches.
    const tree = await serverTree(page, id);
    assert.deepEqual(tree.messages.map((m) => [m.id, m.content]), [
      [edited.id, 'What is a version?'],
      [second.id, second.text],
    ]);
    assert.deepEqual(tree.branches.map((m) => [m.id, m.content]), [
      [question.id, 'What is a branch?'],
      [first.id, first.text],
    ]);
  });

  test('Regenerate creates a second reply beside the first, and ‹ 1/2 › ‹ 2/2 › show both', async () => {
    const page = await openApp();
    const frames = recordFrames(page);
    const { id, reply: first } = await ask(page, 'Give me a version');
    const [question] = await shown(page);
    assert.ok(question);

    await messageAt(page, 1).locator('[data-testid=regenerate]').click();
    // While the new reply is written, nothing else can ask for a version, and says why.
    await page.waitForSelector('[data-testid=message][data-role=assistant][data-status=streaming][data-version="2/2"]', { timeout: TIMEOUT });
    const editButton = messageAt(page, 0).locator('[data-testid=edit]');
    assert.equal(await editButton.getAttribute('aria-disabled'), 'true');
    assert.equal(await editButton.getAttribute('title'), 'Available once the reply has finished (or press Stop)');
    // (Playwright's click waits for an aria-disabled button to be enabled: click it as a user can.)
    const clickedWhileStreaming = await page.evaluate(() => {
      const streaming = document.querySelector('[data-testid=message][data-status=streaming]') !== null;
      /** @type {HTMLElement | null} */ (document.querySelector('[data-testid=message] [data-testid=edit]'))?.click();
      return streaming;
    });
    assert.ok(clickedWhileStreaming);
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve(null))));
    assert.equal(await page.locator('[data-testid=edit-input]').count(), 0, 'a locked Edit opens nothing');

    const [, second] = await waitShown(page, [{ id: question.id, version: null }, { role: 'assistant', version: '2/2' }]);
    assert.ok(second);
    assert.notEqual(second.id, first.id);
    const [regenerate] = frames.of('regenerate');
    assert.equal(regenerate.message_id, first.id);
    assert.match(regenerate.client_msg_id, /^[0-9a-f-]{36}$/);
    assert.equal(frames.of('send').length, 1, 'the question is not asked again as a new turn');
    assert.equal(await editButton.getAttribute('aria-disabled'), null, 'unlocked once the reply is done');

    const nav = messageAt(page, 1).locator('[data-testid=branch-nav]');
    assert.equal(await nav.getAttribute('aria-label'), 'Versions of this reply');
    await nav.getByRole('button', { name: 'Previous version' }).click();
    await waitShown(page, [{ id: question.id }, { id: first.id, text: first.text, version: '1/2' }]);
    await nav.getByRole('button', { name: 'Next version' }).click();
    await waitShown(page, [{ id: question.id }, { id: second.id, text: second.text, version: '2/2' }]);

    const tree = await serverTree(page, id);
    assert.deepEqual(tree.messages.map((m) => m.id), [question.id, second.id]);
    assert.deepEqual(tree.branches.map((m) => [m.id, m.content, m.parent_id]), [[first.id, first.text, question.id]]);
  });

  test('a reload keeps the tree and shows the active path', async () => {
    const page = await openApp();
    const { reply: first } = await ask(page, 'Remember both');
    const [question] = await shown(page);
    assert.ok(question);
    await messageAt(page, 1).locator('[data-testid=regenerate]').click();
    const [, second] = await waitShown(page, [{ id: question.id }, { role: 'assistant', version: '2/2' }]);
    assert.ok(second);
    await editQuestion(page, 0, 'Remember all three');
    const [edited, third] = await waitShown(page, [{ text: 'Remember all three', version: '2/2' }, { role: 'assistant', version: null }]);
    assert.ok(edited && third);
    // Looking at an older version when the page reloads.
    await messageAt(page, 0).getByRole('button', { name: 'Previous version' }).click();
    await waitShown(page, [{ id: question.id, version: '1/2' }, { id: second.id, version: '2/2' }]);

    await page.reload();
    await waitConnected(page);
    // The active path: the newest message and what leads to it.
    await waitShown(page, [
      { id: edited.id, text: 'Remember all three', version: '2/2' },
      { id: third.id, text: third.text, version: null },
    ]);
    // Every version still there.
    await messageAt(page, 0).getByRole('button', { name: 'Previous version' }).click();
    await waitShown(page, [{ id: question.id, text: 'Remember both', version: '1/2' }, { id: second.id, text: second.text, version: '2/2' }]);
    await messageAt(page, 1).getByRole('button', { name: 'Previous version' }).click();
    await waitShown(page, [{ id: question.id }, { id: first.id, text: first.text, version: '1/2' }]);
  });

  test('Continue after Stop goes on with the text, to what an undisturbed reply says', async () => {
    const page = await openApp();
    const frames = recordFrames(page);
    const question = 'Tell me a long story about resuming';
    // The demo model's reply is a pure function of the conversation's text: this one is the reference.
    const { reply: undisturbed } = await ask(page, question);

    await page.locator('[data-testid=new-chat]').click();
    await sendMessage(page, question);
    const id = await conversationId(page);
    await waitReply(page, { longerThan: 30, status: 'streaming' });
    await page.locator('[data-testid=stop]').click();
    const stopped = await waitReply(page, { status: 'cancelled' });
    assert.ok(undisturbed.text.startsWith(stopped.text) && stopped.text.length < undisturbed.text.length);
    const [, cancelled] = await shown(page);
    assert.ok(cancelled);

    const cont = messageAt(page, 1).locator('[data-testid=continue]');
    assert.equal(await cont.getAttribute('aria-disabled'), null);
    assert.equal(await cont.getAttribute('title'), 'Continue this reply');
    await cont.click();
    const [, continued] = await waitShown(page, [{ role: 'user', text: question }, { role: 'assistant', version: '2/2' }]);
    assert.ok(continued);
    assert.equal(continued.text, undisturbed.text, 'the continued reply says what an undisturbed one does');
    assert.equal(frames.of('continue')[0]?.message_id, cancelled.id);
    assert.match(frames.of('continue')[0]?.client_msg_id ?? '', /^[0-9a-f-]{36}$/);

    // The stopped version is kept, with its text.
    await messageAt(page, 1).getByRole('button', { name: 'Previous version' }).click();
    await waitShown(page, [{ role: 'user' }, { id: cancelled.id, text: stopped.text, status: 'cancelled', version: '1/2' }]);
    const tree = await serverTree(page, id);
    assert.deepEqual(tree.messages.map((m) => [m.id, m.status]), [
      [tree.messages[0]?.id, 'complete'],
      [continued.id, 'complete'],
    ]);
    assert.deepEqual(tree.branches.map((m) => [m.id, m.status, m.content]), [[cancelled.id, 'cancelled', stopped.text]]);
  });

  test('a second tab sees a new version live', async () => {
    const first = await openApp();
    const { id, reply } = await ask(first, 'Seen from two tabs');
    const [question] = await shown(first);
    assert.ok(question);
    const second = await openApp(`/#/c/${id}`);
    await waitShown(second, [{ id: question.id }, { id: reply.id, text: reply.text }]);

    await first.locator('[data-testid=message]').nth(1).locator('[data-testid=regenerate]').click();
    // Streaming in the other tab, as the new version.
    await second.waitForSelector('[data-testid=message][data-role=assistant][data-status=streaming][data-version="2/2"]', { timeout: TIMEOUT });
    const [, mine] = await waitShown(first, [{ id: question.id }, { role: 'assistant', version: '2/2' }]);
    assert.ok(mine);
    await waitShown(second, [{ id: question.id }, { id: mine.id, text: mine.text, version: '2/2' }]);

    // And an edit made in the second tab shows in the first.
    await editQuestion(second, 0, 'Seen from two tabs, edited');
    const [edited, answer] = await waitShown(second, [{ text: 'Seen from two tabs, edited', version: '2/2' }, { role: 'assistant' }]);
    assert.ok(edited && answer);
    await waitShown(first, [{ id: edited.id, version: '2/2' }, { id: answer.id, text: answer.text }]);
  });

  test('a question sent from an older branch continues that branch', async () => {
    const page = await openApp();
    const frames = recordFrames(page);
    const { id, reply: first } = await ask(page, 'Start here');
    const [question] = await shown(page);
    assert.ok(question);
    await editQuestion(page, 0, 'Start over there');
    const [edited, other] = await waitShown(page, [{ text: 'Start over there', version: '2/2' }, { role: 'assistant' }]);
    assert.ok(edited && other);

    // Back to the first version, and on from there.
    await messageAt(page, 0).getByRole('button', { name: 'Previous version' }).click();
    await waitShown(page, [{ id: question.id, version: '1/2' }, { id: first.id }]);
    await sendMessage(page, 'And then?');
    const [, , next, answer] = await waitShown(page, [
      { id: question.id, version: '1/2' },
      { id: first.id },
      { role: 'user', text: 'And then?' },
      { role: 'assistant' },
    ]);
    assert.ok(next && answer);
    const sends = frames.of('send');
    assert.equal(sends.at(-1)?.parent_id, first.id, 'sent with parent_id: the last message shown');
    assert.equal(sends[0]?.parent_id, undefined, 'a send on the newest path has none');

    const tree = await serverTree(page, id);
    assert.deepEqual(tree.messages.map((m) => m.id), [question.id, first.id, next.id, answer.id]);
    assert.deepEqual(tree.branches.map((m) => m.id), [edited.id, other.id]);

    // It is now the newest: a reload shows that branch.
    await page.reload();
    await waitConnected(page);
    await waitShown(page, [{ id: question.id, version: '1/2' }, { id: first.id }, { id: next.id }, { id: answer.id, text: answer.text }]);
  });

  test('screenshots of a branched conversation, desktop and phone; axe finds nothing serious', async () => {
    await mkdir(screenshots, { recursive: true });
    const page = await openApp();
    await ask(page, 'How do sequence numbers make delivery exactly-once?');
    await editQuestion(page, 0, 'And with epochs, in a few words?');
    await waitShown(page, [{ role: 'user', version: '2/2' }, { role: 'assistant' }]);
    await messageAt(page, 1).locator('[data-testid=regenerate]').click();
    await waitShown(page, [{ role: 'user', version: '2/2' }, { role: 'assistant', version: '2/2' }]);
    await sendMessage(page, 'And what happens after a restart?');
    await waitReply(page, { longerThan: 40, status: 'streaming' });
    await page.locator('[data-testid=stop]').click();
    await waitShown(page, [{ version: '2/2' }, { role: 'assistant', version: '2/2' }, { role: 'user' }, { role: 'assistant', status: 'cancelled' }]);

    /** @param {string} name */
    const shot = async (name) => {
      await page.evaluate(() => document.fonts.ready);
      await page.mouse.move(1, 1);
      await page.evaluate(() => /** @type {HTMLElement | null} */ (document.activeElement)?.blur());
      await page.screenshot({ path: path.join(screenshots, `${name}.png`), animations: 'disabled' });
    };
    // ‹ 2/2 › on the edited question and on its regenerated reply; the stopped reply below, with Continue.
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.locator('.messages').evaluate((el) => el.scrollTo(0, el.scrollHeight));
    await page.locator('.jump').waitFor({ state: 'detached' });
    await shot('branches-desktop');
    await assertAccessible(page, 'a branched conversation');
    // Dark, the first version of the question shown (1/2) and its reply.
    await page.emulateMedia({ colorScheme: 'dark' });
    await messageAt(page, 0).getByRole('button', { name: 'Previous version' }).click();
    await waitShown(page, [{ version: '1/2' }, { role: 'assistant' }]);
    await page.locator('.messages').evaluate((el) => el.scrollTo(0, 0));
    await shot('branches-desktop-dark');
    await assertAccessible(page, 'an older version, dark');
    await messageAt(page, 0).getByRole('button', { name: 'Next version' }).click();
    await waitShown(page, [{ version: '2/2' }, { role: 'assistant', version: '2/2' }, { role: 'user' }, { role: 'assistant', status: 'cancelled' }]);
    await page.emulateMedia({ colorScheme: 'light' });

    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator('.messages').evaluate((el) => el.scrollTo(0, el.scrollHeight));
    await shot('branches-phone');

    // The editor open on the phone.
    await messageAt(page, 2).locator('[data-testid=edit]').click();
    await messageAt(page, 2).locator('[data-testid=edit-input]').waitFor();
    await page.locator('.messages').evaluate((el) => el.scrollTo(0, el.scrollHeight));
    await page.screenshot({ path: path.join(screenshots, 'branches-phone-editing.png'), animations: 'disabled' });
    await assertAccessible(page, 'a question being edited');
  });
});
