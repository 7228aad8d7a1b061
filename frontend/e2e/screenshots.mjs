// Screenshots of the main views, light and dark, desktop and phone, into
// docs/screenshots/. Run with `npm run screenshots` after `npm run build`.

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

checkPrerequisites();
await mkdir(out, { recursive: true });
const server = await startServer();
const browser = await launchBrowser({ viewport: DESKTOP, colorScheme: 'light', deviceScaleFactor: 1 });
try {
  const page = await browser.context.newPage();
  const shot = async (/** @type {string} */ name) => {
    await page.evaluate(() => document.fonts.ready);
    // No hover highlight or focus ring left where the script last clicked.
    await page.mouse.move(0, PHONE.height - 1);
    await page.evaluate(() => /** @type {HTMLElement | null} */ (document.activeElement)?.blur());
    // Finished transitions: the drawer is shown where it ends up, not mid-slide.
    await page.screenshot({ path: path.join(out, `${name}.png`), animations: 'disabled' });
    console.log(`docs/screenshots/${name}.png`);
  };

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
} finally {
  await browser.close();
  await server.stop();
}
