import { useEffect, useRef } from 'react';
import type { ConversationSummary, SearchResult } from '../api/http';
import { useSearch } from '../hooks/useSearch';
import type { Theme } from '../hooks/useTheme';
import { useI18n } from '../i18n/I18n';
import { ConversationList } from './ConversationList';
import { LanguagePicker } from './LanguagePicker';
import { CloseIcon, LogoMark, PlusIcon } from './icons';
import { SearchBox, SearchResults } from './Search';
import { ThemeSwitch } from './ThemeSwitch';

interface Props {
  open: boolean;
  onClose: () => void;
  onNewChat: () => void;
  conversations: readonly ConversationSummary[];
  loaded: boolean;
  current: string | null;
  onDelete: (id: string) => void;
  onRename?: (id: string, title: string) => Promise<void>;
  hasMore: boolean;
  loadingMore: boolean;
  onLoadMore: () => void;
  /** A search result was chosen: open its conversation at its message. */
  onOpenMessage: (conversationId: string, messageId: string) => void;
  /** The message the open conversation was opened at, if any. */
  currentMessage: string | null;
  theme: Theme;
  onTheme: (theme: Theme) => void;
}

export function Sidebar({
  open,
  onClose,
  onNewChat,
  conversations,
  loaded,
  current,
  onDelete,
  onRename,
  hasMore,
  loadingMore,
  onLoadMore,
  onOpenMessage,
  currentMessage,
  theme,
  onTheme,
}: Props) {
  useDrawerFocus(open, onClose);
  const search = useSearch();
  const { t } = useI18n();
  const openResult = (result: SearchResult) => {
    onOpenMessage(result.conversation_id, result.message_id);
    onClose();
  };
  // Enter opens the first result, searching at once if the typing has not paused yet.
  const openFirst = () => {
    void search.searchNow().then((results) => {
      const first = results?.[0];
      if (first) openResult(first);
    });
  };
  return (
    <aside id="sidebar" className="sidebar" data-open={open}>
      <div className="sidebar-head">
        <LogoMark />
        <span className="brand">chatstream</span>
        <button type="button" className="icon-button drawer-close" onClick={onClose} aria-label={t.closeMenu} data-autofocus>
          <CloseIcon />
        </button>
      </div>
      <button type="button" className="new-chat" data-testid="new-chat" onClick={onNewChat}>
        <PlusIcon />
        {t.newChat}
      </button>
      <SearchBox query={search.query} onQuery={search.setQuery} onSubmit={openFirst} />
      <div className="sidebar-list">
        {search.state.status === 'idle' ? (
          <ConversationList
            conversations={conversations}
            loaded={loaded}
            current={current}
            onOpen={onClose}
            onDelete={onDelete}
            onRename={onRename}
            hasMore={hasMore}
            loadingMore={loadingMore}
            onLoadMore={onLoadMore}
          />
        ) : (
          <SearchResults state={search.state} onOpen={openResult} currentMessage={currentMessage} />
        )}
      </div>
      <div className="sidebar-foot">
        <span className="guest">{t.guest}</span>
        <LanguagePicker />
        <ThemeSwitch theme={theme} onChange={onTheme} />
      </div>
    </aside>
  );
}

/**
 * On a phone the sidebar is a drawer: opening it moves focus into it, Escape
 * closes it, and closing gives focus back to whatever opened it.
 */
function useDrawerFocus(open: boolean, onClose: () => void) {
  const opener = useRef<Element | null>(null);
  useEffect(() => {
    if (!open) return;
    opener.current = document.activeElement;
    document.querySelector<HTMLElement>('#sidebar [data-autofocus]')?.focus();
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && onClose();
    document.addEventListener('keydown', onKey);
    return () => {
      document.removeEventListener('keydown', onKey);
      if (opener.current instanceof HTMLElement) opener.current.focus();
    };
  }, [open, onClose]);
}
