// A reply that ends `failed`, and Retry, in headless Chromium. The node's
// model is a fake OpenAI-compatible upstream run by this test: it refuses the
// first completion with a 400 (the request's own fault, so the node ends the
// reply `failed` at once instead of retrying), and streams a short answer to
// every later one.

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

describe('failures', () => {
  test('a failed reply says so calmly, and Retry asks its question again', async () => {
    const page = await browser.context.newPage();
    await page.goto(server.url);
    await waitConnected(page);
    await sendMessage(page, 'Will this work?');
    await waitReply(page, { status: 'failed' });

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
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=message]').length === 4);
    const done = await waitReply(page, { status: 'complete' });
    assert.equal(done.text.trim(), ANSWER.join(''));
    assert.deepEqual(questions, ['Will this work?', 'Will this work?']);

    const conversation = await serverConversation(page, await conversationId(page));
    assert.deepEqual(
      conversation.messages.map((m) => [m.role, m.status, m.content]),
      [
        ['user', 'complete', 'Will this work?'],
        ['assistant', 'failed', ''],
        ['user', 'complete', 'Will this work?'],
        ['assistant', 'complete', ANSWER.join('')],
      ],
    );
    // The first reply keeps saying it failed.
    assert.equal(await page.locator('[data-testid=reply-failed]').count(), 1);
  });
});
