// Screenshots of the main views, light and dark, desktop and phone, into
// docs/screenshots/. Run with `npm run screenshots` after `npm run build`;
// `npm run screenshots -- vietnamese` writes only the shots whose names
// contain one of the words given.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { conversationId, sendMessage, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

const out = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/screenshots');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const HISTORY = [
  'Explain backpressure with an everyday example',
  'What should a good retry policy look like?',
  'Tips for naming things in code',
];
const QUESTION = [
  'Why could this resume loop **show a token twice** after a reconnect?',
  '',
  '```ts',
  'function onEvent(frame: EventFrame) {',
  '  // apply every delta as it arrives',
  '  state.text += frame.event.text;',
  '  state.seq = frame.seq;',
  '}',
  '```',
].join('\n');

/** A conversation in Vietnamese, in a browser whose language is Vietnamese. */
const VIETNAMESE = [
  'Giải thích cơ chế backpressure bằng một ví dụ đời thường',
  'Viết một hàm TypeScript thử lại với thời gian chờ tăng dần, kèm ví dụ mã',
];

const ENGLISH_SHOTS = [
  'desktop-light-new-chat',
  'desktop-light',
  'desktop-dark-streaming',
  'phone-dark',
  'phone-dark-menu',
  'phone-light',
  'phone-light-new-chat',
];
const VIETNAMESE_SHOTS = ['desktop-light-vietnamese', 'phone-dark-vietnamese'];
const MATHS_SHOTS = ['desktop-light-maths', 'desktop-dark-maths', 'phone-light-maths', 'desktop-light-rename', 'desktop-dark-export'];

/**
 * A reply with maths, a table and code, from a scripted OpenAI-compatible
 * model ("tutor"): the demo model writes no maths.
 */
const MATHS_QUESTION = 'How do I solve a quadratic equation? Formula, examples and code, please.';
const MATHS_REPLY = [
  '## Solving $ax^2 + bx + c = 0$',
  '',
  'For $a \\neq 0$, the two roots are given by the **quadratic formula**:',
  '',
  '$$',
  'x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}',
  '$$',
  '',
  'The *discriminant* $\\Delta = b^2 - 4ac$ tells you what to expect:',
  '',
  '| Equation | $\\Delta$ | Roots |',
  '| --- | ---: | --- |',
  '| $x^2 - 5x + 6 = 0$ | 1 | $2$ and $3$ |',
  '| $x^2 + 2x + 1 = 0$ | 0 | $-1$ (double) |',
  '| $x^2 + 1 = 0$ | −4 | $\\pm i$ |',
  '',
  '```python',
  'import cmath',
  '',
  'def roots(a: float, b: float, c: float) -> tuple[complex, complex]:',
  '    d = cmath.sqrt(b * b - 4 * a * c)  # complex when Δ < 0',
  '    return (-b + d) / (2 * a), (-b - d) / (2 * a)',
  '```',
].join('\n');
const only = process.argv.slice(2);
const wanted = (/** @type {string} */ name) => only.length === 0 || only.some((word) => name.includes(word));

/**
 * @param {import('playwright-core').Page} page
 * @returns {(name: string) => Promise<void>}
 */
const shooter = (page) => async (name) => {
  if (!wanted(name)) return;
  await page.evaluate(() => document.fonts.ready);
  // No hover highlight or focus ring left where the script last clicked.
  await page.mouse.move(0, PHONE.height - 1);
  await page.evaluate(() => /** @type {HTMLElement | null} */ (document.activeElement)?.blur());
  // Finished transitions: the drawer is shown where it ends up, not mid-slide.
  await page.screenshot({ path: path.join(out, `${name}.png`), animations: 'disabled' });
  console.log(`docs/screenshots/${name}.png`);
};

checkPrerequisites();
await mkdir(out, { recursive: true });
const server = await startServer();
const browser = await launchBrowser({ viewport: DESKTOP, colorScheme: 'light', deviceScaleFactor: 1 });
try {
  if (ENGLISH_SHOTS.some(wanted)) await english();
  if (VIETNAMESE_SHOTS.some(wanted)) await vietnamese();
  if (MATHS_SHOTS.some(wanted)) await maths();
} finally {
  await browser.close();
  await server.stop();
}

async function english() {
  const page = await browser.context.newPage();
  const shot = shooter(page);

  await page.goto(server.url);
  await waitConnected(page);
  await shot('desktop-light-new-chat');

  for (const text of HISTORY) {
    await sendMessage(page, text);
    await conversationId(page);
    await waitReply(page, { status: 'complete' });
    await page.locator('[data-testid=new-chat]').click();
  }
  await sendMessage(page, QUESTION);
  await waitReply(page, { status: 'complete' });
  await page.locator('[data-testid=composer]').blur();
  await shot('desktop-light');

  await page.emulateMedia({ colorScheme: 'dark' });
  await sendMessage(page, 'And how does applying events by seq fix it?');
  await waitReply(page, { longerThan: 200, status: 'streaming' });
  await shot('desktop-dark-streaming');
  await waitReply(page, { status: 'complete' });

  await page.setViewportSize(PHONE);
  await shot('phone-dark');
  await page.locator('button[aria-controls=sidebar]').click();
  await page.locator('.sidebar[data-open=true]').waitFor();
  await shot('phone-dark-menu');
  await page.keyboard.press('Escape');

  await page.emulateMedia({ colorScheme: 'light' });
  await shot('phone-light');
  await page.locator('button[aria-controls=sidebar]').click();
  await page.locator('[data-testid=new-chat]').click();
  await shot('phone-light-new-chat');
  await page.close();
}

async function vietnamese() {
  const vi = await launchBrowser({ viewport: DESKTOP, colorScheme: 'light', deviceScaleFactor: 1, locale: 'vi-VN' });
  try {
    const page = await vi.context.newPage();
    const shot = shooter(page);
    await page.goto(server.url);
    await waitConnected(page);
    for (const [i, text] of VIETNAMESE.entries()) {
      await sendMessage(page, text);
      await conversationId(page);
      // This turn's reply, not the previous one.
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid=message]').length >= n, 2 * (i + 1));
      await waitReply(page, { status: 'complete' });
    }
    await shot('desktop-light-vietnamese');
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.setViewportSize(PHONE);
    await shot('phone-dark-vietnamese');
  } finally {
    await vi.close();
  }
}

/** The scripted "tutor" model: an OpenAI-compatible upstream that streams MATHS_REPLY in small pieces. */
async function tutorUpstream() {
  const upstream = createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      if (req.method === 'GET' && req.url === '/v1/models') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'tutor', object: 'model' }] }));
        return;
      }
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const piece of MATHS_REPLY.match(/[\s\S]{1,12}/g) ?? []) {
        res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: piece } }] })}\n\n`);
        await new Promise((resolve) => setTimeout(resolve, 8));
      }
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (upstream.address());
  const dir = await mkdtemp(path.join(tmpdir(), 'chatstream-shots-models-'));
  const config = path.join(dir, 'models.toml');
  await writeFile(config, `[[models]]\nid = "tutor"\n\n[[models.upstreams]]\nbase_url = "http://127.0.0.1:${port}/v1"\n`);
  return {
    config,
    async close() {
      await new Promise((resolve) => upstream.close(() => resolve(undefined)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A reply with maths, a table and code; rename in the list; the export choices. */
async function maths() {
  const upstream = await tutorUpstream();
  const node = await startServer({ MODELS_CONFIG: upstream.config, DEFAULT_MODEL: 'tutor' });
  const tutor = await launchBrowser({ viewport: DESKTOP, colorScheme: 'light', deviceScaleFactor: 1 });
  try {
    const page = await tutor.context.newPage();
    const shot = shooter(page);
    await page.goto(node.url);
    await waitConnected(page);
    for (const text of HISTORY.slice(0, 2)) {
      await sendMessage(page, text);
      await conversationId(page);
      await waitReply(page, { status: 'complete' });
      await page.locator('[data-testid=new-chat]').click();
    }
    await sendMessage(page, MATHS_QUESTION);
    const id = await conversationId(page);
    await waitReply(page, { status: 'complete' });
    await page.locator('[data-testid=composer]').blur();
    await shot('desktop-light-maths');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot('desktop-dark-maths');

    await page.locator('[data-testid=export]').click();
    await page.locator('[data-testid=export-markdown]').waitFor();
    if (wanted('desktop-dark-export')) {
      await page.evaluate(() => document.fonts.ready);
      await page.screenshot({ path: path.join(out, 'desktop-dark-export.png'), animations: 'disabled' });
      console.log('docs/screenshots/desktop-dark-export.png');
    }
    await page.keyboard.press('Escape');

    await page.emulateMedia({ colorScheme: 'light' });
    const row = page.locator(`[data-testid=conversation][data-id="${id}"]`);
    await row.hover();
    await row.locator('[data-testid=rename]').click();
    await row.locator('[data-testid=rename-input]').fill('Quadratic equations');
    if (wanted('desktop-light-rename')) {
      await page.evaluate(() => document.fonts.ready);
      await page.screenshot({ path: path.join(out, 'desktop-light-rename.png'), animations: 'disabled' });
      console.log('docs/screenshots/desktop-light-rename.png');
    }
    await row.locator('[data-testid=rename-input]').press('Enter');
    await page.waitForFunction(() => document.querySelector('.chat-title')?.textContent === 'Quadratic equations');

    // A phone shows the reply's end, as it follows a reply (the formula and the table above it).
    await page.setViewportSize(PHONE);
    if (await page.locator('.jump').count()) await page.locator('.jump').click();
    await page.locator('.jump').waitFor({ state: 'detached' });
    await shot('phone-light-maths');
  } finally {
    await tutor.close();
    await node.stop();
    await upstream.close();
  }
}
