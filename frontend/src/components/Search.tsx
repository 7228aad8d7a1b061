import { Fragment, useRef, type KeyboardEvent, type MouseEvent } from 'react';
import { MAX_QUERY_CHARS, type SearchResult } from '../api/http';
import type { SearchState } from '../hooks/useSearch';
import { en } from '../i18n/en';
import { useI18n } from '../i18n/I18n';
import { serverSentence } from '../lib/failures';
import { routeHash } from '../lib/route';
import { parseSnippet } from '../lib/snippet';
import { titleOf } from './ConversationList';
import { CloseIcon, SearchIcon } from './icons';

export const NO_MATCH_TEXT = en.noMatch;
export const UNAVAILABLE_TEXT = en.searchUnavailable;

/**
 * A snippet with its matched words highlighted. Every part is a React text
 * child, so the browser shows `<script>` in a snippet as those characters.
 */
export function Snippet({ text }: { text: string }) {
  return (
    <span className="snippet">
      {parseSnippet(text).map((part, i) => (part.match ? <mark key={i}>{part.text}</mark> : <Fragment key={i}>{part.text}</Fragment>))}
    </span>
  );
}

interface BoxProps {
  query: string;
  onQuery: (query: string) => void;
  /** Enter: open the first result (searching first if the typing has not paused yet). */
  onSubmit: () => void;
}

export function SearchBox({ query, onQuery, onSubmit }: BoxProps) {
  const input = useRef<HTMLInputElement>(null);
  const { t } = useI18n();
  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'Escape' && query) {
      // Clears the search; only an empty box lets Escape close the drawer.
      e.preventDefault();
      e.stopPropagation();
      onQuery('');
    } else if (e.key === 'Enter' && !e.nativeEvent.isComposing) {
      e.preventDefault();
      onSubmit();
    }
  };
  return (
    <div className="search-box" role="search">
      <SearchIcon />
      <input
        ref={input}
        type="search"
        className="search-input"
        data-testid="search"
        placeholder={t.searchMessages}
        aria-label={t.searchMessages}
        // The results exist only while there is something to search for.
        aria-controls={query.trim() ? 'search-results' : undefined}
        autoComplete="off"
        spellCheck={false}
        maxLength={MAX_QUERY_CHARS}
        value={query}
        onChange={(e) => onQuery(e.target.value)}
        onKeyDown={onKeyDown}
      />
      {query && (
        <button
          type="button"
          className="icon-button search-clear"
          aria-label={t.clearSearch}
          onClick={() => {
            onQuery('');
            input.current?.focus();
          }}
        >
          <CloseIcon />
        </button>
      )}
    </div>
  );
}

interface ResultsProps {
  state: Exclude<SearchState, { status: 'idle' }>;
  onOpen: (result: SearchResult) => void;
  /** The message open now, marked in the results. */
  currentMessage: string | null;
}

export function SearchResults({ state, onOpen, currentMessage }: ResultsProps) {
  const results = state.status === 'done' || state.status === 'searching' ? state.results : null;
  const { t } = useI18n();
  let note: string | null = null;
  if (state.status === 'unavailable') note = t.searchUnavailable;
  else if (state.status === 'failed') note = `${t.searchFailed} ${serverSentence(state.message, t) ?? t.tryAgainSoon}`;
  else if (state.status === 'done' && state.results.length === 0) note = t.noMatch;
  else if (state.status === 'searching' && !results) note = t.searching;

  const open = (e: MouseEvent<HTMLAnchorElement>, result: SearchResult) => {
    // A click with a modifier opens the link as the browser would (a new tab).
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    onOpen(result);
  };

  return (
    <section
      id="search-results"
      className="search-results"
      aria-label={t.searchResults}
      aria-busy={state.status === 'searching'}
      data-testid="search-results"
      data-status={state.status}
    >
      {note !== null && (
        <p className="list-note" role="status" data-testid="search-note">
          {note}
        </p>
      )}
      {note === null && results && (
        <ul>
          {results.map((r) => (
            <li key={r.message_id} className="search-result" data-testid="search-result" data-id={r.message_id}>
              <a
                href={routeHash(r.conversation_id, r.message_id)}
                aria-current={r.message_id === currentMessage ? 'true' : undefined}
                onClick={(e) => open(e, r)}
              >
                <span className="result-head">
                  <span className="result-title">{titleOf({ title: r.conversation_title }, t.untitledChat)}</span>
                  <span className="result-role">{r.role === 'user' ? t.you : t.assistant}</span>
                </span>
                <Snippet text={r.snippet} />
              </a>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
