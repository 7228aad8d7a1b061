// Messages as Markdown in the browser: a streaming reply renders only its
// unfinished block again (finished blocks keep their nodes), code blocks
// spanning many deltas come out whole, and LaTeX maths is laid out as
// MathML, sanitized, never inside code, under the node's
// Content-Security-Policy.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { conversationId, sendMessage, waitConnected, waitReply } from './app.mjs';
import { checkPrerequisites, launchBrowser, startServer } from './harness.mjs';

/** @typedef {import('playwright-core').Page} Page */

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {Awaited<ReturnType<typeof launchBrowser>> | undefined} */
let browser;

before(async () => {
  checkPrerequisites();
  // A reply long enough for a heading, a list, a table and a code block, streamed over many deltas.
  server = await startServer({ DEMO_REPLY_TOKENS: '260', DEMO_TOKEN_DELAY_MS: '15' });
});

after(async () => {
  await server?.stop();
});

afterEach(async () => {
  await browser?.close();
  browser = undefined;
});

/** A page of the app that records every Content-Security-Policy violation. */
async function openApp() {
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  await page.addInitScript(() => {
    /** @type {string[]} */
    const violations = [];
    Object.assign(window, { __violations: violations });
    document.addEventListener('securitypolicyviolation', (e) => violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  await page.goto(server.url);
  await waitConnected(page);
  return page;
}

/** @param {Page} page @returns {Promise<string[]>} */
const violations = (page) => page.evaluate(() => /** @type {any} */ (window).__violations);

/** The rendered HTML of the last reply, whitespace between tags dropped. @param {Page} page */
const replyHtml = (page) =>
  page.evaluate(() => {
    const replies = document.querySelectorAll('[data-testid=message][data-role=assistant] .markdown');
    return (replies[replies.length - 1]?.innerHTML ?? '').replace(/>\s+</g, '><').trim();
  });

describe('a streaming reply', () => {
  test('keeps the nodes of its finished blocks and renders what a reload renders', async () => {
    const page = await openApp();
    await sendMessage(page, 'Explain binary search in Rust with a code example');
    const id = await conversationId(page);
    // Once the reply shows a few blocks, watch its first one and every node removed from then on.
    await page.waitForFunction(
      () => {
        const replies = document.querySelectorAll('[data-testid=message][data-role=assistant]');
        const reply = replies[replies.length - 1];
        return reply?.getAttribute('data-status') === 'streaming' && (reply.querySelector('.markdown')?.children.length ?? 0) >= 3;
      },
      null,
      { timeout: 15_000 },
    );
    await page.evaluate(() => {
      const replies = document.querySelectorAll('[data-testid=message][data-role=assistant] .markdown');
      const markdown = /** @type {HTMLElement} */ (replies[replies.length - 1]);
      const first = /** @type {Element} */ (markdown.firstElementChild);
      let removed = 0;
      let firstRemoved = false;
      let updates = 0;
      new MutationObserver((records) => {
        updates++;
        for (const record of records) {
          for (const node of record.removedNodes) {
            if (node.nodeType === Node.ELEMENT_NODE) removed++;
            if (node === first) firstRemoved = true;
          }
        }
      }).observe(markdown, { childList: true });
      Object.assign(window, { __watch: { markdown, first, stats: () => ({ removed, firstRemoved, updates }) } });
    });
    const reply = await waitReply(page, { status: 'complete' });
    const watched = await page.evaluate(() => {
      const { markdown, first, stats } = /** @type {any} */ (window).__watch;
      return { ...stats(), stillFirst: markdown.firstElementChild === first, elements: markdown.children.length };
    });
    assert.ok(watched.updates > 10, `the reply kept streaming after the first blocks (${watched.updates} updates)`);
    assert.equal(watched.firstRemoved, false, 'the first block was never rendered again');
    assert.equal(watched.stillFirst, true);
    // Only the unfinished block is replaced per delta, never the whole message.
    assert.ok(
      watched.removed < watched.updates * 3,
      `${watched.removed} elements removed over ${watched.updates} updates of ${watched.elements} elements`,
    );

    // The reply has a fenced code block, written over many deltas: it is one block, whole.
    const fences = reply.text.match(/^```/gm)?.length ?? 0;
    assert.ok(fences >= 2, 'the demo reply holds a code block');
    const code = await page
      .locator('[data-testid=message][data-role=assistant] .code-block code')
      .last()
      .textContent();
    const source = /```[^\n]*\n([\s\S]*?)\n```/.exec(reply.text)?.[1] ?? '';
    assert.equal(code, source, 'the code block shows its whole source');
    assert.equal(await page.locator('[data-testid=message][data-role=assistant] .code-block').count(), fences / 2);

    // What the stream left on the page is what rendering the finished text gives.
    const streamed = await replyHtml(page);
    await page.reload();
    await waitConnected(page);
    await page.waitForFunction(() => document.querySelector('[data-testid=message][data-role=assistant][data-status=complete]'));
    assert.equal(await conversationId(page), id);
    assert.equal(await replyHtml(page), streamed);
    assert.deepEqual(await violations(page), []);
  });
});

describe('maths', () => {
  test('is laid out as MathML, inline and as a block, never inside code, loading and styling nothing', async () => {
    const page = await openApp();
    const text = [
      'Euler: $e^{i\\pi} + 1 = 0$, a price of $5 and $10, and `$x^2$` in code.',
      '',
      '$$',
      'x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}',
      '$$',
      '',
      'Also \\(a^2 + b^2 = c^2\\) and $\\href{javascript:alert(1)}{click}$ and $\\frac{broken$.',
      '',
      '```tex',
      '$$\\frac{1}{2}$$',
      '```',
    ].join('\n');
    await sendMessage(page, text);
    await conversationId(page);
    const question = page.locator('[data-testid=message][data-role=user] .markdown').first();
    await question.locator('math').first().waitFor();
    const found = await question.evaluate((el) => ({
      inline: el.querySelectorAll('.math-inline > math').length,
      display: el.querySelectorAll('.math-display > math[display=block]').length,
      fraction: el.querySelectorAll('.math-display mfrac').length,
      root: el.querySelectorAll('.math-display msqrt').length,
      codeSpan: el.querySelector('p code:not(.math-error)')?.textContent,
      codeBlock: el.querySelector('.code-block code')?.textContent,
      mathInCode: el.querySelectorAll('code math, pre math').length,
      errors: [...el.querySelectorAll('code.math-error')].map((c) => c.textContent),
      annotations: el.querySelectorAll('annotation, semantics').length,
      styled: el.querySelectorAll('[style]').length,
      links: [...el.querySelectorAll('[href]')].map((a) => a.getAttribute('href')),
      widths: [...el.querySelectorAll('math')].map((m) => m.getBoundingClientRect().width),
      text: el.textContent ?? '',
    }));
    assert.equal(found.inline, 3, 'Euler, Pythagoras and the \\href one (shown as its text)');
    assert.equal(found.display, 1);
    assert.equal(found.fraction, 1);
    assert.equal(found.root, 1);
    assert.equal(found.codeSpan, '$x^2$');
    assert.equal(found.codeBlock, '$$\\frac{1}{2}$$');
    assert.equal(found.mathInCode, 0);
    assert.deepEqual(found.errors, ['$\\frac{broken$']);
    assert.equal(found.annotations, 0);
    assert.equal(found.styled, 0);
    assert.deepEqual(found.links, [], 'no link from \\href');
    assert.match(found.text, /a price of \$5 and \$10/, 'prices are not maths');
    for (const width of found.widths) assert.ok(width > 5, `each formula is laid out (${found.widths.join(', ')} px)`);
    await waitReply(page, { status: 'complete' });
    assert.deepEqual(await violations(page), []);
  });
});
