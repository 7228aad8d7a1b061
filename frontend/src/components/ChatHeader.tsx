import type { ReactNode } from 'react';
import { useI18n } from '../i18n/I18n';
import { MenuIcon } from './icons';

interface Props {
  title: string;
  drawerOpen: boolean;
  onMenu: () => void;
  children: ReactNode;
}

export function ChatHeader({ title, drawerOpen, onMenu, children }: Props) {
  const { t } = useI18n();
  return (
    <header className="chat-header">
      <button
        type="button"
        className="icon-button menu"
        onClick={onMenu}
        aria-label={t.openConversations}
        aria-controls="sidebar"
        aria-expanded={drawerOpen}
      >
        <MenuIcon />
      </button>
      <h1 className="chat-title" title={title}>
        {title}
      </h1>
      <div className="chat-tools">{children}</div>
    </header>
  );
}
