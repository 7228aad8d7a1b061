import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError, searchMessages, type SearchResult } from '../api/http';

/** Wait this long after the last keystroke before asking the server. */
export const SEARCH_DEBOUNCE_MS = 250;
/** Results asked for per search. */
const LIMIT = 20;

export type SearchState =
  /** No query: the sidebar shows the conversation list. */
  | { status: 'idle' }
  /** Waiting for the typing to pause, or for the server; `results` are the previous query's, still shown. */
  | { status: 'searching'; query: string; results: readonly SearchResult[] | null }
  | { status: 'done'; query: string; results: readonly SearchResult[] }
  /** The node has no durable store (503 `unavailable`). */
  | { status: 'unavailable'; query: string }
  /** `message`: the server's sentence, if it gave one. */
  | { status: 'failed'; query: string; message?: string };

/**
 * Searches the user's messages as they type: debounced, each new query
 * aborting the one before, a late answer to an older query never shown.
 * `searchNow` skips the wait (Enter) and resolves with the results of the
 * current query.
 */
export function useSearch() {
  const [query, setQuery] = useState('');
  const [state, setState] = useState<SearchState>({ status: 'idle' });
  const controller = useRef<AbortController | null>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  /** The query whose answer is (or will be) in `state`. */
  const asked = useRef<{ query: string; answer: Promise<readonly SearchResult[] | null> } | null>(null);

  const run = useCallback((q: string): Promise<readonly SearchResult[] | null> => {
    clearTimeout(timer.current);
    if (asked.current?.query === q) return asked.current.answer;
    controller.current?.abort();
    const abort = new AbortController();
    controller.current = abort;
    const answer = searchMessages(q, LIMIT, abort.signal).then(
      (results) => {
        if (abort.signal.aborted) return null;
        setState({ status: 'done', query: q, results });
        return results;
      },
      (error: unknown) => {
        if (abort.signal.aborted) return null;
        const unavailable = error instanceof ApiError && error.code === 'unavailable';
        // Only the server's own sentence is shown; a browser's network error text is not for people.
        const message = error instanceof ApiError ? error.message : undefined;
        setState(unavailable ? { status: 'unavailable', query: q } : { status: 'failed', query: q, message });
        // Ask again next time rather than keep the failure.
        if (asked.current?.query === q) asked.current = null;
        return null;
      },
    );
    asked.current = { query: q, answer };
    return answer;
  }, []);

  /** The search box changed: start waiting for the typing to pause (in the event, not in an effect). */
  const changeQuery = useCallback(
    (next: string) => {
      setQuery(next);
      const q = next.trim();
      clearTimeout(timer.current);
      if (!q) {
        controller.current?.abort();
        controller.current = null;
        asked.current = null;
        setState({ status: 'idle' });
        return;
      }
      // The same query (a space typed): what is shown, or on its way, stands.
      if (asked.current?.query === q) return;
      // Another query: the answer to the previous one must not arrive.
      controller.current?.abort();
      asked.current = null;
      setState((previous) => ({
        status: 'searching',
        query: q,
        results: previous.status === 'done' || previous.status === 'searching' ? previous.results : null,
      }));
      timer.current = setTimeout(() => void run(q), SEARCH_DEBOUNCE_MS);
    },
    [run],
  );

  useEffect(
    () => () => {
      clearTimeout(timer.current);
      controller.current?.abort();
    },
    [],
  );

  const searchNow = useCallback(() => {
    const q = query.trim();
    return q ? run(q) : Promise.resolve(null);
  }, [query, run]);

  const clear = useCallback(() => changeQuery(''), [changeQuery]);

  return { query, setQuery: changeQuery, state, searchNow, clear };
}
