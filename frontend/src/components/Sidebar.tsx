import { useEffect, useRef } from 'react';
import type { ConversationSummary } from '../api/http';
import type { Theme } from '../hooks/useTheme';
import { ConversationList } from './ConversationList';
import { CloseIcon, LogoMark, PlusIcon } from './icons';
import { ThemeSwitch } from './ThemeSwitch';

interface Props {
  open: boolean;
  onClose: () => void;
  onNewChat: () => void;
  conversations: readonly ConversationSummary[];
  loaded: boolean;
  current: string | null;
  onDelete: (id: string) => void;
  theme: Theme;
  onTheme: (theme: Theme) => void;
}

export function Sidebar({ open, onClose, onNewChat, conversations, loaded, current, onDelete, theme, onTheme }: Props) {
  useDrawerFocus(open, onClose);
  return (
    <aside id="sidebar" className="sidebar" data-open={open}>
      <div className="sidebar-head">
        <LogoMark />
        <span className="brand">chatstream</span>
        <button type="button" className="icon-button drawer-close" onClick={onClose} aria-label="Close menu" data-autofocus>
          <CloseIcon />
        </button>
      </div>
      <button type="button" className="new-chat" data-testid="new-chat" onClick={onNewChat}>
        <PlusIcon />
        New chat
      </button>
      <div className="sidebar-list">
        <ConversationList
          conversations={conversations}
          loaded={loaded}
          current={current}
          onOpen={onClose}
          onDelete={onDelete}
        />
      </div>
      <div className="sidebar-foot">
        <span className="guest">Guest</span>
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
