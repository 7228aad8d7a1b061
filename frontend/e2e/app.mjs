// Page helpers for driving the chat UI. Every wait is on a condition in the
// page, never a fixed sleep.

/** @typedef {import('playwright-core').Page} Page */

export const REPLY_TOKENS = 80;
const TIMEOUT = 15_000;

/** @param {Page} page */
export async function waitConnected(page) {
  await page.waitForSelector('[data-testid=connection][data-state=connected]', { timeout: TIMEOUT });
}

/** Type a message and press Enter. @param {Page} page @param {string} text */
export async function sendMessage(page, text) {
  const composer = page.locator('[data-testid=composer]');
  await composer.fill(text);
  await composer.press('Enter');
}

/** The open conversation's id, from the address. @param {Page} page */
export async function conversationId(page) {
  await page.waitForFunction(() => location.hash.startsWith('#/c/'), null, { timeout: TIMEOUT });
  // `#/c/<id>`, or `#/c/<id>/m/<message>` when opened at a message.
  return page.evaluate(() => decodeURIComponent(location.hash.slice(4).split('/')[0] ?? ''));
}

/** The conversations the sidebar lists, in order: id and title. @param {Page} page */
export function listedConversations(page) {
  return page.$$eval('[data-testid=conversation]', (els) =>
    els.map((el) => ({ id: el.getAttribute('data-id') ?? '', title: el.querySelector('a')?.textContent ?? '' })),
  );
}

/**
 * The guest identity the page holds: `user_id` and the token's `sub`.
 * @param {Page} page
 * @returns {Promise<{ userId: string, sub: string, token: string }>}
 */
export function identity(page) {
  return page.evaluate(() => {
    const auth = JSON.parse(localStorage.getItem('chatstream.auth') ?? '{}');
    const payload = String(auth.token ?? '').split('.')[1] ?? '';
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const claims = payload ? JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '='))) : {};
    return { userId: auth.user_id, sub: claims.sub, token: auth.token };
  });
}

/**
 * Call the node's JSON API with the page's own token.
 * @param {Page} page @param {string} method @param {string} path @param {unknown} [body]
 * @returns {Promise<{ status: number, body: any }>}
 */
export function api(page, method, path, body) {
  return page.evaluate(
    async ({ method, path, body }) => {
      const { token } = JSON.parse(localStorage.getItem('chatstream.auth') ?? '{}');
      /** @type {Record<string, string>} */
      const headers = { Authorization: `Bearer ${token}` };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    { method, path, body },
  );
}

/**
 * The last reply on the page: `text`, its raw content (the Markdown source, as the server
 * holds it; the message's `data-content`), `shown`, the rendered text (Markdown syntax gone,
 * so not a prefix of the finished reply's while it grows), and its status.
 * Compare `text` with the server's content; use `shown` only for what the reader sees.
 * @param {Page} page
 * @returns {Promise<{ text: string, shown: string, status: string } | null>}
 */
export function lastReply(page) {
  return page.evaluate(() => {
    const replies = document.querySelectorAll('[data-testid=message][data-role=assistant]');
    const el = replies[replies.length - 1];
    if (!el) return null;
    return {
      text: el.getAttribute('data-content') ?? '',
      shown: el.querySelector('.markdown')?.textContent ?? '',
      status: el.getAttribute('data-status') ?? '',
    };
  });
}

/**
 * Wait until the last reply satisfies a condition on its raw content's length and its status.
 * @param {Page} page
 * @param {{ longerThan?: number, status?: string }} condition
 */
export async function waitReply(page, { longerThan = -1, status } = {}) {
  await page.waitForFunction(
    ({ longerThan, status }) => {
      const replies = document.querySelectorAll('[data-testid=message][data-role=assistant]');
      const el = replies[replies.length - 1];
      if (!el) return false;
      const length = (el.getAttribute('data-content') ?? '').length;
      return length > longerThan && (status === undefined || el.getAttribute('data-status') === status);
    },
    { longerThan, status },
    { timeout: TIMEOUT },
  );
  return /** @type {{ text: string, shown: string, status: string }} */ (await lastReply(page));
}

/**
 * Every message shown, in order: role, raw content (`text`) and rendered text (`shown`).
 * @param {Page} page
 */
export function shownMessages(page) {
  return page.$$eval('[data-testid=message]', (els) =>
    els.map((el) => ({
      role: el.getAttribute('data-role'),
      text: el.getAttribute('data-content') ?? '',
      shown: el.querySelector('.markdown')?.textContent ?? '',
    })),
  );
}

/**
 * The conversation as the server holds it, read with the page's own token.
 * @param {Page} page @param {string} id
 * @returns {Promise<{ messages: { id: string, role: string, content: string, status: string }[] }>}
 */
export async function serverConversation(page, id) {
  return /** @type {any} */ (await page.evaluate(async (id) => {
    const { token } = JSON.parse(localStorage.getItem('chatstream.auth') ?? '{}');
    const response = await fetch(`/api/conversations/${id}`, { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) throw new Error(`GET conversation: HTTP ${response.status}`);
    return response.json();
  }, id));
}
