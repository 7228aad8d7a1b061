// The conversation list, loaded a page at a time (`GET /api/conversations`
// answers `{conversations, next}`, newest first: `updated_at` descending,
// then `id` descending). Pure functions, so that the merging is tested
// without a browser.

import type { ConversationSummary } from '../api/http';

/** What the sidebar holds of the list. */
export interface ListPages {
  /** Newest first, each id once. */
  items: ConversationSummary[];
  /** The cursor (`before`) of the page after the last one held; null: nothing more. */
  next: string | null;
}

/** One page as the server answers it. */
export interface Page {
  conversations: ConversationSummary[];
  next: string | null;
}

export const emptyPages = (): ListPages => ({ items: [], next: null });

/**
 * An RFC 3339 instant as a sortable key at microsecond precision (the
 * server's), which `Date.parse` alone would cut to milliseconds. NaN-free:
 * an unreadable time sorts last.
 */
export function instantKey(time: string): number {
  const fraction = /\.(\d+)/.exec(time);
  const whole = Date.parse(fraction ? time.replace(fraction[0], '') : time);
  if (Number.isNaN(whole)) return -Infinity;
  const micros = fraction ? Number((fraction[1] ?? '').slice(0, 6).padEnd(6, '0')) : 0;
  return whole * 1000 + micros;
}

/** The server's order: negative when `a` comes first (newer). */
export function compareConversations(a: ConversationSummary, b: ConversationSummary): number {
  const byTime = instantKey(b.updated_at) - instantKey(a.updated_at);
  if (byTime !== 0 && !Number.isNaN(byTime)) return byTime;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/**
 * Every conversation of `lists` once, newest first. Where an id appears more
 * than once (a conversation updated between two page loads), the entry with
 * the later `updated_at` wins, and the later list breaks a tie.
 */
export function mergeConversations(...lists: readonly (readonly ConversationSummary[])[]): ConversationSummary[] {
  const byId = new Map<string, ConversationSummary>();
  for (const list of lists) {
    for (const c of list) {
      const held = byId.get(c.id);
      if (!held || instantKey(c.updated_at) >= instantKey(held.updated_at)) byId.set(c.id, c);
    }
  }
  return [...byId.values()].sort(compareConversations);
}

/**
 * A fresh first page (the newest conversations, refetched after a change).
 * It is the truth up to its last entry: anything held that would sort within
 * it but is not in it was deleted. Older entries held beyond it (pages loaded
 * by scrolling) stay, and so does the cursor after them.
 */
export function withFirstPage(held: ListPages, page: Page): ListPages {
  const fresh = mergeConversations(page.conversations);
  const boundary = fresh.at(-1);
  if (page.next === null || !boundary) return { items: fresh, next: page.next };
  const inPage = new Set(fresh.map((c) => c.id));
  const older = held.items.filter((c) => !inPage.has(c.id) && compareConversations(c, boundary) > 0);
  if (older.length === 0) return { items: fresh, next: page.next };
  return { items: mergeConversations(fresh, older), next: held.next };
}

/**
 * The page after the held ones, asked for with the cursor `cursor`. A page
 * asked for before the list changed under it (`cursor` is no longer the held
 * `next`) is ignored: the next scroll asks again.
 */
export function withNextPage(held: ListPages, cursor: string, page: Page): ListPages {
  if (held.next !== cursor) return held;
  return { items: mergeConversations(held.items, page.conversations), next: page.next };
}

/** How many to ask for when refetching the first page: at least a page, enough to cover what is shown. */
export function refreshLimit(held: ListPages, pageSize: number, maxLimit = 200): number {
  return Math.min(maxLimit, Math.max(pageSize, held.items.length));
}
