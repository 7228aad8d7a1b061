import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import { ApiError, deleteConversation, listConversations, renameConversation, type ConversationSummary } from '../api/http';
import { announceListChange, onListChange } from '../lib/tabs';
import { emptyPages, refreshLimit, withFirstPage, withNextPage, type ListPages } from '../lib/conversationPages';
import { backoffDelay } from '../protocol/backoff';
import { useChatClient } from './useChat';

/** Wait this long after a change before refetching, so a burst of events costs one request. */
const REFRESH_DELAY_MS = 250;
/** A failed fetch (server unavailable, offline) is retried after 1 s, doubling up to 30 s. */
const RETRY_BASE_MS = 1000;
const RETRY_CAP_MS = 30_000;

/** The list without the conversations known to be gone (deleted, or `not_found` when opened). */
export function withoutRemoved(
  list: readonly ConversationSummary[],
  removed: readonly string[],
): ConversationSummary[] {
  if (removed.length === 0) return [...list];
  const gone = new Set(removed);
  return list.filter((c) => !gone.has(c.id));
}

/** Conversations asked for per page when scrolling (the server's default). */
export const PAGE_SIZE = 50;

/**
 * The user's conversations, most recently updated first, a page at a time:
 * the first page, then the next each time `loadMore` is called (the sidebar
 * calls it when its end scrolls into view). The first page is refetched when
 * the protocol client says the list may have changed, when another tab says
 * it created or deleted one (BroadcastChannel, lib/tabs.ts), and when the tab
 * regains focus; pages loaded
 * by scrolling are kept, and no conversation is ever listed twice.
 */
export function useConversations(listVersion: number, removed: readonly string[] = []) {
  const client = useChatClient();
  const [pages, setPages] = useState<ListPages>(emptyPages);
  const [loaded, setLoaded] = useState(false);
  const [loadingMore, setLoadingMore] = useState(false);
  const pagesRef = useRef(pages);
  useLayoutEffect(() => {
    pagesRef.current = pages;
  }, [pages]);
  const latest = useRef(0);
  const failures = useRef(0);
  const retryTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  /** The cursor of the page being fetched by `loadMore`, if any. */
  const fetchingMore = useRef<string | null>(null);

  const refresh = useCallback(() => {
    async function fetchFirstPage(): Promise<void> {
      const request = ++latest.current;
      clearTimeout(retryTimer.current);
      try {
        const page = await listConversations({ limit: refreshLimit(pagesRef.current, PAGE_SIZE) });
        // An older request finishing late must not overwrite a newer answer.
        if (request !== latest.current) return;
        failures.current = 0;
        setPages((held) => withFirstPage(held, page));
        setLoaded(true);
      } catch {
        // Offline, the node restarting or the store recovering (`unavailable`):
        // keep what is shown and ask again with backoff.
        if (request !== latest.current) return;
        const delay = backoffDelay(failures.current++, Math.random, RETRY_BASE_MS, RETRY_CAP_MS);
        retryTimer.current = setTimeout(() => void fetchFirstPage(), delay);
      }
    }
    return fetchFirstPage();
  }, []);

  const loadMore = useCallback(async () => {
    const cursor = pagesRef.current.next;
    if (cursor === null || fetchingMore.current === cursor) return;
    fetchingMore.current = cursor;
    setLoadingMore(true);
    try {
      const page = await listConversations({ limit: PAGE_SIZE, before: cursor });
      setPages((held) => withNextPage(held, cursor, page));
    } catch {
      // The button stays; the next scroll or click asks again.
    } finally {
      if (fetchingMore.current === cursor) {
        fetchingMore.current = null;
        setLoadingMore(false);
      }
    }
  }, []);

  useEffect(() => () => clearTimeout(retryTimer.current), []);

  useEffect(() => {
    const timer = setTimeout(() => void refresh(), listVersion === 0 ? 0 : REFRESH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [listVersion, refresh]);

  useEffect(() => {
    const onVisible = () => document.visibilityState === 'visible' && void refresh();
    document.addEventListener('visibilitychange', onVisible);
    const offTabs = onListChange(() => void refresh());
    return () => {
      document.removeEventListener('visibilitychange', onVisible);
      offTabs();
    };
  }, [refresh]);

  const remove = useCallback(
    async (id: string) => {
      setPages((held) => ({ ...held, items: held.items.filter((c) => c.id !== id) }));
      try {
        await deleteConversation(id);
        client.forget(id);
        announceListChange();
      } catch (error) {
        // Already gone is what we wanted; anything else leaves it in place
        // (the refresh below shows it again).
        if (error instanceof ApiError && error.code === 'not_found') client.forget(id);
        // Only the server's own sentence is shown; a browser's network error text is not for people.
        else client.notify('delete_failed', error instanceof ApiError ? error.message : '');
      }
      void refresh();
    },
    [client, refresh],
  );

  /**
   * `PATCH /api/conversations/{id}` `{title}`: the list shows the new title
   * at once, other tabs are told. Throws the node's `ApiError` (the caller
   * shows its sentence); the list is left as it was.
   */
  const rename = useCallback(
    async (id: string, title: string) => {
      const renamed = await renameConversation(id, title);
      const newTitle = renamed.title ?? title;
      setPages((held) => ({ ...held, items: held.items.map((c) => (c.id === id ? { ...c, title: newTitle } : c)) }));
      announceListChange();
      void refresh();
    },
    [refresh],
  );

  // A conversation found gone leaves the list at once, before the next fetch.
  const conversations = useMemo(() => withoutRemoved(pages.items, removed), [pages.items, removed]);

  return { conversations, loaded, remove, rename, hasMore: pages.next !== null, loadingMore, loadMore };
}
