// A reply that ends `failed`, and Retry, in headless Chromium. The node's
// model is a fake OpenAI-compatible upstream run by this test: it refuses the
// first completion with a 400 (the request's own fault, so the node ends the
// reply `failed` at once instead of retrying), and streams a short answer to
// every later one. Retry asks for a new version of the failed reply
// (`regenerate`), shown beside it as ‹ 2/2 ›.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { conversationId, sendMessage, serverConversation, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

const ANSWER = ['Second ', 'time ', 'lucky.'];

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>>} */
let browser;
/** @type {import('node:http').Server} */
let upstream;
/** The last user message of each completion request the upstream got. */
const questions = /** @type {string[]} */ ([]);
let configDir = '';

before(async () => {
  checkPrerequisites();
  upstream = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/v1/models') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'flaky', object: 'model' }] }));
        return;
      }
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404).end();
        return;
      }
      const messages = JSON.parse(body).messages ?? [];
      questions.push(messages.filter((/** @type {any} */ m) => m.role === 'user').at(-1)?.content ?? '');
      if (questions.length === 1) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'upstream says: bad request', type: 'invalid_request_error' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const text of ANSWER) res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: text } }] })}\n\n`);
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (upstream.address());
  configDir = await mkdtemp(path.join(tmpdir(), 'chatstream-e2e-models-'));
  const config = path.join(configDir, 'models.toml');
  await writeFile(config, `[[models]]\nid = "flaky"\n\n[[models.upstreams]]\nbase_url = "http://127.0.0.1:${port}/v1"\n`);
  server = await startServer({ MODELS_CONFIG: config, DEFAULT_MODEL: 'flaky' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await new Promise((resolve) => (upstream ? upstream.close(resolve) : resolve(undefined)));
  if (configDir) await rm(configDir, { recursive: true, force: true });
});

/** @typedef {{ id: string, role: string, text: string, status: string, version: string | null }} Shown */

/** The messages shown, in order. @param {import('playwright-core').Page} page @returns {Promise<Shown[]>} */
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
 * Wait until the messages shown match, one partial `Shown` per message.
 * @param {import('playwright-core').Page} page @param {Partial<Shown>[]} expected
 */
async function waitShown(page, expected) {
  try {
    await page.waitForFunction(
      (expected) => {
        const els = Array.from(document.querySelectorAll('[data-testid=message]'));
        if (els.length !== expected.length) return false;
        return expected.every((want, i) => {
          const el = /** @type {Element} */ (els[i]);
          /** @type {Record<string, string | null>} */
          const got = {
            id: el.getAttribute('data-id'),
            role: el.getAttribute('data-role'),
            text: el.getAttribute('data-content'),
            status: el.getAttribute('data-status'),
            version: el.getAttribute('data-version'),
          };
          return Object.entries(want).every(([k, v]) => got[k] === v);
        });
      },
      expected,
      { timeout: 15_000 },
    );
  } catch (error) {
    throw new Error(`${error}\nwanted ${JSON.stringify(expected)}\nshown ${JSON.stringify(await shown(page))}`);
  }
  return shown(page);
}

describe('failures', () => {
  test('a failed reply says so calmly, and Retry asks for a new version of it', async () => {
    const page = await browser.context.newPage();
    /** Client frames the page sent (pings left out). @type {any[]} */
    const frames = [];
    page.on('websocket', (ws) =>
      ws.on('framesent', ({ payload }) => {
        const frame = JSON.parse(String(payload));
        if (frame.type !== 'ping') frames.push(frame);
      }),
    );
    await page.goto(server.url);
    await waitConnected(page);
    await sendMessage(page, 'Will this work?');
    await waitReply(page, { status: 'failed' });
    const [question, failedReply] = await waitShown(page, [
      { role: 'user', text: 'Will this work?', version: null },
      { role: 'assistant', status: 'failed', version: null },
    ]);
    assert.ok(question && failedReply);

    const failed = page.locator('[data-testid=message][data-role=assistant] [data-testid=reply-failed]');
    const text = ((await failed.locator('p').textContent()) ?? '').trim();
    assert.match(text, /^This reply could not be completed\./);
    assert.doesNotMatch(text, /[{}]|_/, 'no JSON and no code');
    assert.doesNotMatch(text, /:\/\/|127\.0\.0\.1/, 'no internal address');
    // Quiet: the muted text colour, no outline.
    const look = await failed.evaluate((el) => {
      const probe = document.createElement('span');
      probe.style.color = 'var(--muted)';
      el.append(probe);
      const muted = getComputedStyle(probe).color;
      probe.remove();
      return { color: getComputedStyle(el).color, muted, border: getComputedStyle(el).borderStyle };
    });
    assert.equal(look.border, 'none');
    assert.equal(look.color, look.muted);
    // Regenerate would do the same as Retry: only Retry is offered.
    assert.equal(await page.locator('[data-testid=regenerate]').count(), 0);

    await failed.locator('[data-testid=retry]').click();
    // One question; the new reply in the failed one's place, as its second version.
    const [, retried] = await waitShown(page, [
      { id: question.id, role: 'user', text: 'Will this work?', version: null },
      { role: 'assistant', status: 'complete', text: ANSWER.join(''), version: '2/2' },
    ]);
    assert.ok(retried);
    assert.notEqual(retried.id, failedReply.id);
    assert.equal(await page.locator('[data-testid=reply-failed]').count(), 0);
    // A `regenerate` of the failed reply, not the question sent again.
    assert.deepEqual(
      frames.filter((f) => f.type === 'send').map((f) => f.content),
      ['Will this work?'],
    );
    assert.deepEqual(
      frames.filter((f) => f.type === 'regenerate').map((f) => f.message_id),
      [failedReply.id],
    );
    // The model was asked the same question twice: once failing, once answering.
    assert.deepEqual(questions, ['Will this work?', 'Will this work?']);

    const conversation = /** @type {any} */ (await serverConversation(page, await conversationId(page)));
    assert.deepEqual(
      conversation.messages.map((/** @type {any} */ m) => [m.id, m.role, m.status, m.content]),
      [
        [question.id, 'user', 'complete', 'Will this work?'],
        [retried.id, 'assistant', 'complete', ANSWER.join('')],
      ],
    );
    assert.deepEqual(
      (conversation.branches ?? []).map((/** @type {any} */ m) => [m.id, m.role, m.status, m.parent_id]),
      [[failedReply.id, 'assistant', 'failed', question.id]],
    );

    // The failed version stays reachable with ‹ ›, and still says it failed.
    const nav = page.locator('[data-testid=message][data-role=assistant] [data-testid=branch-nav]');
    await nav.getByRole('button', { name: 'Previous version' }).click();
    await waitShown(page, [
      { id: question.id, version: null },
      { id: failedReply.id, status: 'failed', version: '1/2' },
    ]);
    assert.equal(await page.locator('[data-testid=reply-failed]').count(), 1);
    await nav.getByRole('button', { name: 'Next version' }).click();
    await waitShown(page, [
      { id: question.id, version: null },
      { id: retried.id, status: 'complete', text: ANSWER.join(''), version: '2/2' },
    ]);
    assert.equal(await page.locator('[data-testid=reply-failed]').count(), 0);
  });
});
