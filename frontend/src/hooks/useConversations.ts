import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError, deleteConversation, listConversations, type ConversationSummary } from '../api/http';
import { useChatClient } from './useChat';

/** Wait this long after a change before refetching, so a burst of events costs one request. */
const REFRESH_DELAY_MS = 250;

/**
 * The user's conversations, most recently updated first. Refetched when the
 * protocol client says the list may have changed and when the tab regains
 * focus (another tab may have created or deleted some).
 */
export function useConversations(listVersion: number) {
  const client = useChatClient();
  const [conversations, setConversations] = useState<ConversationSummary[]>([]);
  const [loaded, setLoaded] = useState(false);
  const latest = useRef(0);

  const refresh = useCallback(async () => {
    const request = ++latest.current;
    try {
      const list = await listConversations();
      // An older request finishing late must not overwrite a newer answer.
      if (request !== latest.current) return;
      setConversations(list);
      setLoaded(true);
    } catch {
      // Offline or the node is restarting: the connection indicator says so,
      // and the next reconnect bumps listVersion, which retries.
    }
  }, []);

  useEffect(() => {
    const timer = setTimeout(() => void refresh(), listVersion === 0 ? 0 : REFRESH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [listVersion, refresh]);

  useEffect(() => {
    const onVisible = () => document.visibilityState === 'visible' && void refresh();
    document.addEventListener('visibilitychange', onVisible);
    return () => document.removeEventListener('visibilitychange', onVisible);
  }, [refresh]);

  const remove = useCallback(
    async (id: string) => {
      setConversations((list) => list.filter((c) => c.id !== id));
      try {
        await deleteConversation(id);
      } catch (error) {
        // Already gone is what we wanted.
        if (!(error instanceof ApiError && error.code === 'not_found')) {
          client.notify(error instanceof ApiError ? error.code : 'network', (error as Error).message);
        }
      }
      client.forget(id);
      void refresh();
    },
    [client, refresh],
  );

  return { conversations, loaded, remove };
}
