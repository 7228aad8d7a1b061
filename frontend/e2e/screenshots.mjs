// Screenshots of the main views, light and dark, desktop and phone, into
// docs/screenshots/. Run with `npm run screenshots` after `npm run build`;
// `npm run screenshots -- vietnamese` writes only the shots whose names
// contain one of the words given.

import { mkdir } from 'node:fs/promises';
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
