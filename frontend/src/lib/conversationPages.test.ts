import { describe, expect, it } from 'vitest';
import type { ConversationSummary } from '../api/http';
import {
  compareConversations,
  emptyPages,
  instantKey,
  mergeConversations,
  refreshLimit,
  withFirstPage,
  withNextPage,
  type ListPages,
} from './conversationPages';

/** A conversation updated `minute` minutes past midnight (later is newer). */
const c = (id: string, minute: number, title = id): ConversationSummary => ({
  id,
  title,
  created_at: '2030-01-01T00:00:00Z',
  updated_at: new Date(Date.UTC(2030, 0, 1, 0, minute)).toISOString(),
});
const ids = (list: ListPages | readonly ConversationSummary[]) => ('items' in list ? list.items : list).map((x) => x.id);

describe('the paged conversation list', () => {
  it('orders newest first, then by id descending, at microsecond precision', () => {
    expect(instantKey('2030-01-01T00:00:00.000002Z')).toBeGreaterThan(instantKey('2030-01-01T00:00:00.000001Z'));
    expect(instantKey('2030-01-01T00:00:00.5Z')).toBe(instantKey('2030-01-01T00:00:00.500000Z'));
    expect(instantKey('2030-01-01T01:00:00+01:00')).toBe(instantKey('2030-01-01T00:00:00Z'));
    const same = [c('a', 1), c('c', 1), c('b', 1), c('z', 2)];
    expect(ids([...same].sort(compareConversations))).toEqual(['z', 'c', 'b', 'a']);
  });

  it('loads the first page, then the next pages after it', () => {
    let list = withFirstPage(emptyPages(), { conversations: [c('e', 5), c('d', 4)], next: 'p2' });
    expect(list).toEqual({ items: [c('e', 5), c('d', 4)], next: 'p2' });
    list = withNextPage(list, 'p2', { conversations: [c('c', 3), c('b', 2)], next: 'p3' });
    list = withNextPage(list, 'p3', { conversations: [c('a', 1)], next: null });
    expect(ids(list)).toEqual(['e', 'd', 'c', 'b', 'a']);
    expect(list.next).toBeNull();
  });

  it('never lists a conversation twice', () => {
    // `c` was updated between loading the first page and the second: it is in both.
    let list: ListPages = { items: [c('c', 9), c('e', 5), c('d', 4)], next: 'p2' };
    list = withNextPage(list, 'p2', { conversations: [c('c', 3), c('b', 2)], next: null });
    expect(ids(list)).toEqual(['c', 'e', 'd', 'b']);
    expect(list.items[0]?.updated_at).toBe(c('c', 9).updated_at);
    // And a duplicate inside one answer.
    expect(ids(mergeConversations([c('x', 1), c('x', 2), c('y', 1)]))).toEqual(['x', 'y']);
  });

  it('a refreshed first page brings new and updated conversations to the top, keeping older pages', () => {
    const held: ListPages = { items: [c('e', 5), c('d', 4), c('c', 3), c('b', 2)], next: 'p3' };
    // A new conversation `f`, and `b` (on the second page) got a reply.
    const list = withFirstPage(held, { conversations: [c('b', 7), c('f', 6)], next: 'fresh-p2' });
    expect(ids(list)).toEqual(['b', 'f', 'e', 'd', 'c']);
    // The cursor still continues after the last page held.
    expect(list.next).toBe('p3');
  });

  it('a refreshed first page drops what it should contain but does not (deleted elsewhere)', () => {
    const held: ListPages = { items: [c('e', 5), c('d', 4), c('c', 3), c('b', 2)], next: 'p3' };
    // `d` was deleted in another tab; the page ends at `c`.
    const list = withFirstPage(held, { conversations: [c('e', 5), c('c', 3)], next: 'after-c' });
    expect(ids(list)).toEqual(['e', 'c', 'b']);
    expect(list.next).toBe('p3');
  });

  it('a refreshed first page that is the whole list replaces it', () => {
    const held: ListPages = { items: [c('e', 5), c('d', 4), c('c', 3)], next: null };
    const list = withFirstPage(held, { conversations: [c('d', 8), c('c', 3)], next: null });
    expect(list).toEqual({ items: [c('d', 8), c('c', 3)], next: null });
    expect(withFirstPage(held, { conversations: [], next: null })).toEqual({ items: [], next: null });
  });

  it('a refreshed first page that covers everything held takes its own cursor', () => {
    const held: ListPages = { items: [c('e', 5), c('d', 4)], next: 'old' };
    const list = withFirstPage(held, { conversations: [c('f', 6), c('e', 5), c('d', 4)], next: 'new' });
    expect(list).toEqual({ items: [c('f', 6), c('e', 5), c('d', 4)], next: 'new' });
  });

  it('ignores a next page asked for before the list changed under it', () => {
    const held: ListPages = { items: [c('e', 5)], next: 'p2-new' };
    expect(withNextPage(held, 'p2-old', { conversations: [c('a', 1)], next: null })).toBe(held);
  });

  it('refetches at least a page, enough to cover what is shown, at most 200', () => {
    const many = (n: number): ListPages => ({ items: Array.from({ length: n }, (_, i) => c(`x${i}`, i)), next: 'n' });
    expect(refreshLimit(emptyPages(), 50)).toBe(50);
    expect(refreshLimit(many(120), 50)).toBe(120);
    expect(refreshLimit(many(500), 50)).toBe(200);
  });
});
