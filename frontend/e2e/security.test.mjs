// The page under the node's Content-Security-Policy, in headless Chromium:
// the built UI and the single-file fallback page run with no violation, the
// socket opens with a ticket rather than the token, and images in messages
// fetch nothing.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { sendMessage, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */

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
 * A page that records every Content-Security-Policy violation: the
 * `securitypolicyviolation` events (from a script added before the page's own,
 * outside its policy) and the console's reports of them.
 * @returns {Promise<{ page: Page, violations: () => Promise<string[]> }>}
 */
async function watchedPage() {
  const page = await browser.context.newPage();
  /** @type {string[]} */
  const reported = [];
  page.on('console', (message) => {
    if (/Content[- ]Security[- ]Policy/i.test(message.text())) reported.push(message.text());
  });
  await page.addInitScript(() => {
    /** @type {string[]} */
    const seen = [];
    Object.defineProperty(window, '__cspViolations', { value: seen });
    document.addEventListener('securitypolicyviolation', (e) => seen.push(`${e.violatedDirective}: ${e.blockedURI}`));
  });
  return {
    page,
    violations: async () => [...(await page.evaluate(() => /** @type {any} */ (window).__cspViolations)), ...reported],
  };
}

/** A server that counts every request it gets: what a remote image would hit. */
async function imageHost() {
  /** @type {string[]} */
  const requests = [];
  const host = createServer((req, res) => {
    requests.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'image/gif' }).end();
  });
  await new Promise((resolve) => host.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (host.address());
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => host.close(resolve)),
  };
}

describe('security', () => {
  test('the built UI runs under the policy, its socket opens with a ticket, and images in messages fetch nothing', async () => {
    const { page, violations } = await watchedPage();
    /** @type {string[]} */
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    const images = await imageHost();
    try {
      const response = await page.goto(server.url);
      assert.match(response?.headers()['content-security-policy'] ?? '', /script-src 'self'[;\s]/);
      await waitConnected(page);

      // Markdown images, raw HTML images and inline styles, as a model (or a paste) could write them.
      await sendMessage(
        page,
        `A chart: ![the chart](${images.url}/markdown.png) and <img src="${images.url}/raw.png" alt="raw"> ` +
          `and <span style="color: red">red</span> and ![dot](data:image/gif;base64,R0lGODlhAQABAAAAACw=)`,
      );
      await waitReply(page, { status: 'complete' });

      const question = page.locator('[data-testid=message][data-role=user] .markdown');
      assert.equal(await page.locator('.markdown img, .markdown [style]').count(), 0, 'no image and no inline style in messages');
      assert.equal(await question.locator(`a.image-link[href="${images.url}/markdown.png"]`).textContent(), 'the chart');
      // Markup shows as the text it is; a data: image keeps its description.
      const shown = ((await question.textContent()) ?? '').trim();
      assert.ok(shown.includes(`<img src="${images.url}/raw.png" alt="raw">`), shown);
      assert.ok(shown.includes('<span style="color: red">red</span>'), shown);
      assert.match(shown, /and dot$/);
      assert.deepEqual(images.requests, [], 'nothing was fetched from the image host');
      assert.deepEqual(await violations(), []);

      assert.ok(sockets.length > 0, 'the page opened a socket');
      for (const url of sockets) {
        const query = new URL(url).searchParams;
        assert.ok(query.get('ticket'), `the socket opens with a ticket: ${url}`);
        assert.equal(query.get('token'), null, `no token in the socket's URL: ${url}`);
      }
    } finally {
      await images.close();
    }
  });

  test('the fallback page runs its inline script and style under the policy', async () => {
    // A STATIC_DIR without index.html: the node serves its single-file page.
    const empty = await mkdtemp(path.join(tmpdir(), 'chatstream-e2e-nostatic-'));
    const fallback = await startServer({ STATIC_DIR: empty });
    try {
      const { page, violations } = await watchedPage();
      /** @type {string[]} */
      const sockets = [];
      page.on('websocket', (socket) => sockets.push(socket.url()));
      await page.goto(fallback.url);
      // Its script connects, and its stylesheet applies (the sidebar grid).
      await page.waitForSelector('#conn[data-state=connected]', { timeout: 15_000 });
      assert.equal(await page.evaluate(() => getComputedStyle(document.body).display), 'grid');
      assert.deepEqual(await violations(), []);
      // It too opens its socket with a ticket, never with the token.
      assert.ok(sockets.length > 0, 'the page opened a socket');
      for (const url of sockets) {
        assert.match(url, /[?&]ticket=/);
        assert.doesNotMatch(url, /[?&]token=/);
      }
    } finally {
      await fallback.stop();
      await rm(empty, { recursive: true, force: true });
    }
  });
});
