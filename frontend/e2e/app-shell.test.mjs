// The page as an installable app, and for readers who prefer less motion:
// the web app manifest loads and has what Chromium needs to offer
// installing it (name, start_url, display, 192 and 512 px PNG icons), and
// with `prefers-reduced-motion: reduce` nothing on the page animates.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { sendMessage, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>> | undefined} */
let browser;

before(async () => {
  checkPrerequisites();
  server = await startServer({ DEMO_TOKEN_DELAY_MS: '40' });
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

describe('the web app manifest', () => {
  test("loads and has what Chromium's installability needs", async () => {
    const page = await openApp();
    const href = await page.locator('link[rel=manifest]').getAttribute('href');
    assert.equal(href, '/manifest.webmanifest');
    const response = await page.request.get(`${server.url}/manifest.webmanifest`);
    assert.equal(response.status(), 200);

    const cdp = await page.context().newCDPSession(page);
    const { url, errors, data, parsed } = await cdp.send('Page.getAppManifest', {});
    assert.equal(url, `${server.url}/manifest.webmanifest`);
    assert.deepEqual(errors, [], 'Chromium parses it without an error');
    const manifest = JSON.parse(/** @type {string} */ (data));
    assert.equal(manifest.name, 'chatstream');
    assert.equal(manifest.short_name, 'chatstream');
    assert.equal(manifest.start_url, '/');
    assert.equal(manifest.display, 'standalone');
    assert.match(manifest.theme_color, /^#[0-9a-f]{6}$/i);
    assert.match(manifest.background_color, /^#[0-9a-f]{6}$/i);
    assert.notEqual(manifest.prefer_related_applications, true);
    assert.ok(parsed?.scope?.endsWith('/'), 'a scope Chromium read from it');

    // Each PNG icon is served as a PNG of the size it claims: at least one of 192 px and one of 512 px.
    /** @type {{src: string, sizes: string, type: string, purpose?: string}[]} */
    const icons = manifest.icons;
    const sizes = [];
    for (const icon of icons.filter((i) => i.type === 'image/png')) {
      const size = await page.evaluate(async (src) => {
        const response = await fetch(src);
        const bitmap = await createImageBitmap(await response.blob());
        return { type: response.headers.get('content-type'), width: bitmap.width, height: bitmap.height };
      }, icon.src);
      assert.equal(size.type, 'image/png', icon.src);
      assert.equal(`${size.width}x${size.height}`, icon.sizes, icon.src);
      if ((icon.purpose ?? 'any').includes('any')) sizes.push(icon.sizes);
    }
    assert.ok(sizes.includes('192x192') && sizes.includes('512x512'), `icons of 192 and 512 px (${sizes.join(', ')})`);

    // And Chromium itself finds nothing missing.
    const installability = await cdp.send('Page.getInstallabilityErrors');
    assert.deepEqual(installability.installabilityErrors, []);
  });
});

describe('prefers-reduced-motion', () => {
  /**
   * The animations running on the page while a reply streams (the caret
   * blinks) and at phone size what a drawer opening would slide.
   * @param {Page} page
   */
  async function motion(page) {
    await sendMessage(page, 'Write something long');
    await waitReply(page, { longerThan: 20, status: 'streaming' });
    const running = await page.evaluate(() => document.getAnimations().map((a) => /** @type {CSSAnimation} */ (a).animationName ?? 'transition'));
    const caret = await page.evaluate(() => {
      const replies = document.querySelectorAll('[data-testid=message][data-role=assistant] .markdown > :last-child');
      const last = replies[replies.length - 1];
      return last ? getComputedStyle(last, '::after').animationName : null;
    });
    await waitReply(page, { status: 'complete' });
    await page.setViewportSize({ width: 390, height: 844 });
    const drawer = await page.evaluate(() => {
      const sidebar = /** @type {HTMLElement} */ (document.querySelector('#sidebar'));
      const style = getComputedStyle(sidebar);
      return { transition: style.transitionDuration, scroll: getComputedStyle(document.querySelector('.messages') ?? document.body).scrollBehavior };
    });
    return { running, caret, drawer };
  }

  test('without it, the caret blinks and the drawer slides', async () => {
    const page = await openApp();
    const { running, caret, drawer } = await motion(page);
    assert.ok(running.includes('blink'), `animations: ${running.join(', ')}`);
    assert.equal(caret, 'blink');
    assert.notEqual(drawer.transition.split(',').map((d) => d.trim()).filter((d) => d !== '0s').length, 0);
  });

  test('with it, nothing animates, slides or scrolls smoothly', async () => {
    const page = await openApp({ reducedMotion: 'reduce' });
    assert.equal(await page.evaluate(() => matchMedia('(prefers-reduced-motion: reduce)').matches), true);
    const { running, caret, drawer } = await motion(page);
    assert.deepEqual(running, [], 'no animation while a reply streams');
    assert.equal(caret, 'none', 'the caret stands still');
    assert.deepEqual(drawer.transition.split(',').map((d) => d.trim()).filter((d) => d !== '0s'), [], 'the drawer appears without sliding');
    assert.equal(drawer.scroll, 'auto');
    // The drawer opens at once: open at the first frame after the click.
    await page.locator('button[aria-controls=sidebar]').click();
    const left = await page.evaluate(() => document.querySelector('#sidebar')?.getBoundingClientRect().left);
    assert.equal(left, 0);
  });
});
