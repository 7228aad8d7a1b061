// The browser chat against a real node, in headless Chromium.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import {
  REPLY_TOKENS,
  conversationId,
  sendMessage,
  serverConversation,
  shownMessages,
  waitConnected,
  waitReply,
} from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

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

// A fresh profile per test: each test is a new guest with its own conversations.
beforeEach(async () => {
  browser = await launchBrowser();
});

afterEach(async () => {
  await browser?.close();
});

async function openApp(path = '/') {
  const page = await browser.context.newPage();
  await page.goto(server.url + path);
  await waitConnected(page);
  return page;
}

/** The last message the server holds for a conversation. */
async function serverReply(/** @type {import('playwright-core').Page} */ page, /** @type {string} */ id) {
  const conversation = await serverConversation(page, id);
  const reply = conversation.messages.at(-1);
  assert.ok(reply && reply.role === 'assistant', 'the server holds a reply');
  return reply;
}

// Replies are compared raw (the message's Markdown source, as the server holds it): the rendered
// text drops the syntax, and a growing table or list renders differently once its rows arrive.
const isPrefix = (/** @type {string} */ part, /** @type {string} */ whole) => whole.startsWith(part);

describe('the browser chat', () => {
  test('a reply appears progressively and ends complete', async () => {
    const page = await openApp();
    await sendMessage(page, 'Tell me about streaming replies');

    // Sample the reply each time it grows: a progressive reply is seen at many lengths.
    const samples = [];
    let length = -1;
    for (let i = 0; i < 6; i++) {
      const sample = await waitReply(page, { longerThan: length });
      samples.push(sample);
      length = sample.text.length;
      if (sample.status !== 'streaming') break;
    }
    const growing = samples.filter((s) => s.status === 'streaming' && s.text.length > 0);
    assert.ok(growing.length >= 4, `seen growing at ${growing.length} lengths: ${samples.map((s) => s.text.length)}`);
    assert.ok(
      growing.some((s) => s.shown.trim().length > 0),
      'the growing reply is rendered as it grows',
    );

    const done = await waitReply(page, { status: 'complete' });
    const reply = await serverReply(page, await conversationId(page));
    assert.equal(reply.status, 'complete');
    assert.equal(done.text, reply.content);
    assert.equal(reply.content.trim().split(/\s+/).length, REPLY_TOKENS);
    for (const s of samples) assert.ok(isPrefix(s.text, reply.content), `"${s.text}" is a prefix of the reply`);

    // Shown rendered: the heading as a heading, without the Markdown syntax.
    const heading = /^## (.+)$/m.exec(reply.content)?.[1];
    assert.ok(heading, `the demo reply opens with a heading: "${reply.content.slice(0, 80)}"`);
    const rendered = page.locator('[data-testid=message][data-role=assistant] .markdown').last();
    assert.equal(((await rendered.locator('h2').first().textContent()) ?? '').trim(), heading);
    assert.ok(done.shown.includes(heading), 'the rendered reply shows the heading words');
    assert.doesNotMatch(done.shown, /##|\*\*/, 'no Markdown syntax in the rendered reply');
  });

  test('a reload mid-reply shows the whole reply, without repeats or gaps, and keeps streaming', async () => {
    const page = await openApp();
    const question = 'What happens when I reload the page';
    await sendMessage(page, question);
    const beforeReload = await waitReply(page, { longerThan: 30, status: 'streaming' });
    const id = await conversationId(page);

    await page.reload();
    await waitConnected(page);
    const resumed = await waitReply(page, { longerThan: beforeReload.text.length - 1 });
    assert.equal(resumed.status, 'streaming', 'the reply is still being written after the reload');
    const later = await waitReply(page, { longerThan: resumed.text.length });

    const done = await waitReply(page, { status: 'complete' });
    const reply = await serverReply(page, id);
    assert.equal(done.text, reply.content);
    assert.equal(reply.content.trim().split(/\s+/).length, REPLY_TOKENS, 'every token once');
    for (const s of [beforeReload, resumed, later]) assert.ok(isPrefix(s.text, reply.content), `"${s.text}" is a prefix`);
    assert.deepEqual(
      (await shownMessages(page)).map((m) => [m.role, m.text]),
      [
        ['user', question],
        ['assistant', reply.content],
      ],
    );
  });

  test('Stop stops the reply, and it stays stopped after a reload', async () => {
    const page = await openApp();
    await sendMessage(page, 'Please go on for a while');
    await waitReply(page, { longerThan: 30, status: 'streaming' });
    await page.locator('[data-testid=stop]').click();
    const stopped = await waitReply(page, { status: 'cancelled' });
    const id = await conversationId(page);

    const reply = await serverReply(page, id);
    assert.equal(reply.status, 'cancelled');
    assert.equal(stopped.text, reply.content);
    assert.ok(reply.content.trim().split(/\s+/).length < REPLY_TOKENS, 'the reply ended early');

    await page.reload();
    await waitConnected(page);
    const reloaded = await waitReply(page, { status: 'cancelled' });
    assert.equal(reloaded.text, reply.content);
    assert.equal(await page.locator('[data-testid=stop]').count(), 0, 'no Stop button for a stopped reply');
    await page.locator('[data-testid=regenerate]').waitFor();
    const again = await serverReply(page, id);
    assert.deepEqual([again.status, again.content], ['cancelled', reply.content]);
  });

  test('two tabs on one conversation show the same text', async () => {
    const first = await openApp();
    await sendMessage(first, 'Two tabs, one conversation');
    const id = await conversationId(first);
    await waitReply(first, { longerThan: 10, status: 'streaming' });

    const second = await openApp(`/#/c/${id}`);
    // The second tab finds the reply streaming and can stop it too.
    await second.locator('[data-testid=stop]').waitFor({ timeout: 5_000 });
    await second.locator(`[data-testid=conversation][data-id="${id}"]`).waitFor();

    const [a, b] = await Promise.all([
      waitReply(first, { status: 'complete' }),
      waitReply(second, { status: 'complete' }),
    ]);
    const reply = await serverReply(first, id);
    assert.equal(a.text, reply.content);
    assert.equal(b.text, reply.content);
    assert.deepEqual(await shownMessages(first), await shownMessages(second));
  });

  test('Regenerate writes a new version of the reply, without asking the question again', async () => {
    const page = await openApp();
    // Shift+Enter adds a line; Enter sends.
    const composer = page.locator('[data-testid=composer]');
    await composer.fill('Ask me');
    await composer.press('Shift+Enter');
    await composer.pressSequentially('twice');
    await composer.press('Enter');
    await waitReply(page, { status: 'complete' });
    await page.locator('[data-testid=regenerate]').click();
    // Contract 1.2: a second version beside the first reply (‹ 2/2 ›), not a new turn.
    await page.waitForSelector('[data-testid=message][data-role=assistant][data-version="2/2"]');
    const done = await waitReply(page, { status: 'complete' });
    assert.equal((await shownMessages(page)).length, 2);

    const conversation = /** @type {any} */ (await serverConversation(page, await conversationId(page)));
    assert.deepEqual(
      conversation.messages.map((/** @type {any} */ m) => [m.role, m.status]),
      [
        ['user', 'complete'],
        ['assistant', 'complete'],
      ],
    );
    assert.equal(conversation.messages[0]?.content, 'Ask me\ntwice');
    assert.equal(done.text, conversation.messages[1]?.content);
    assert.deepEqual(
      conversation.branches.map((/** @type {any} */ m) => [m.role, m.parent_id]),
      [['assistant', conversation.messages[0]?.id]],
    );
  });

  test('a dropped network shows offline, then resumes the reply with since, without repeats', async () => {
    const page = await openApp();
    /** @type {any[]} */
    const subscribes = [];
    page.on('websocket', (ws) =>
      ws.on('framesent', ({ payload }) => {
        const frame = JSON.parse(String(payload));
        if (frame.type === 'subscribe') subscribes.push(frame);
      }),
    );
    await sendMessage(page, 'Keep going while my network drops');
    await waitReply(page, { longerThan: 20, status: 'streaming' });
    const id = await conversationId(page);

    await browser.context.setOffline(true);
    await page.waitForSelector('[data-testid=connection][data-state=offline]');
    await browser.context.setOffline(false);
    await waitConnected(page);
    const done = await waitReply(page, { status: 'complete' });

    const resume = subscribes.find((f) => f.conversation_id === id);
    assert.ok(resume?.since && resume.since.seq > 0, `resubscribed with since: ${JSON.stringify(resume)}`);
    const reply = await serverReply(page, id);
    assert.equal(done.text, reply.content);
    assert.equal(reply.content.trim().split(/\s+/).length, REPLY_TOKENS, 'every token once');
    assert.equal((await shownMessages(page)).length, 2);
  });

  test('a link to a conversation that does not exist says so and opens a new chat', async () => {
    const page = await openApp(`/#/c/${randomUUID()}`);
    const notice = page.locator('[data-testid=notice][data-code=not_found]');
    await notice.waitFor();
    // A sentence for people: the server's, or the page's for the code; never the code or JSON.
    const text = ((await notice.textContent()) ?? '').trim();
    assert.match(text, /^[A-Z].*[.!]$/);
    assert.doesNotMatch(text, /not_found|[{}]/);
    await page.waitForFunction(() => location.hash === '');
    assert.equal(await page.locator('.chat-title').textContent(), 'New chat');
  });

  test('a refused token is renewed without a click', async () => {
    const page = await openApp();
    await page.evaluate(() => {
      const auth = JSON.parse(localStorage.getItem('chatstream.auth') ?? '{}');
      localStorage.setItem('chatstream.auth', JSON.stringify({ ...auth, token: 'not-a-jwt' }));
    });
    await page.reload();
    await page.locator('[data-testid=notice][data-code=unauthorized]').waitFor();
    await waitConnected(page);
    const token = await page.evaluate(() => JSON.parse(localStorage.getItem('chatstream.auth') ?? '{}').token);
    assert.ok(token && token !== 'not-a-jwt', 'a new token is stored');
    await sendMessage(page, 'Still here?');
    await waitReply(page, { status: 'complete' });
  });

  test('the list shows titles, opens and deletes conversations', async () => {
    const page = await openApp();
    assert.equal(await page.locator('[data-testid=model]').inputValue(), 'demo');
    await sendMessage(page, 'First topic');
    const first = await conversationId(page);
    await waitReply(page, { status: 'complete' });
    await page.locator('[data-testid=new-chat]').click();
    await sendMessage(page, 'Second topic');
    const second = await conversationId(page);

    // Newest first, titled by their first message.
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=conversation]').length === 2);
    const titles = await page.$$eval('[data-testid=conversation] a', (els) => els.map((el) => el.textContent));
    assert.deepEqual(titles, ['Second topic', 'First topic']);

    await page.locator(`[data-testid=conversation][data-id="${first}"] a`).click();
    await page.waitForFunction((id) => location.hash === `#/c/${id}`, first);
    await waitReply(page, { status: 'complete' });
    assert.equal((await shownMessages(page))[0]?.text.trim(), 'First topic');

    // Deleting the other one, its reply perhaps still streaming, leaves this one open.
    await page.locator(`[data-testid=conversation][data-id="${second}"] button.delete`).click();
    // The list drops it at once, before the server answers: wait for the DELETE's answer too.
    const deleted = page.waitForResponse(
      (r) => r.request().method() === 'DELETE' && r.url().endsWith(`/api/conversations/${second}`),
    );
    await page.locator('[data-testid=confirm-delete]').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=conversation]').length === 1);
    assert.ok((await deleted).ok(), 'the server deleted it');
    const status = await page.evaluate(async (id) => {
      const { token } = JSON.parse(localStorage.getItem('chatstream.auth') ?? '{}');
      return (await fetch(`/api/conversations/${id}`, { headers: { Authorization: `Bearer ${token}` } })).status;
    }, second);
    assert.equal(status, 404);
    assert.equal(await conversationId(page), first);
  });

  test('the view follows the reply, unless the reader scrolled up', async () => {
    const page = await openApp();
    await page.setViewportSize({ width: 500, height: 300 });
    const distanceFromBottom = () =>
      page.evaluate(() => {
        const el = /** @type {HTMLElement} */ (document.querySelector('.messages'));
        return el.scrollHeight - el.scrollTop - el.clientHeight;
      });
    await sendMessage(page, 'Fill the screen please');

    // Once the reply overflows the view, the view keeps its end in sight.
    await page.waitForFunction(() => {
      const el = document.querySelector('.messages');
      return el !== null && el.scrollHeight > el.clientHeight + 100;
    });
    assert.ok((await distanceFromBottom()) < 48, 'pinned to the bottom while streaming');

    // Scrolled up, the reader stays where they are while the text grows.
    await page.evaluate(() => document.querySelector('.messages')?.scrollTo(0, 0));
    const { text } = await waitReply(page, { status: 'streaming' });
    await waitReply(page, { longerThan: text.length + 20 });
    assert.equal(await page.evaluate(() => document.querySelector('.messages')?.scrollTop), 0);

    await page.getByRole('button', { name: 'Jump to latest' }).click();
    await waitReply(page, { status: 'complete' });
    assert.ok((await distanceFromBottom()) < 48, 'following again after "Jump to latest"');
  });
});
