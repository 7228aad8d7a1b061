import { useState, type ReactNode } from 'react';
import { useI18n } from '../i18n/I18n';
import { ExportMenu } from './ExportMenu';
import { MenuIcon } from './icons';
import { PencilIcon, RenameForm } from './RenameForm';

interface Props {
  title: string;
  drawerOpen: boolean;
  onMenu: () => void;
  /** The open conversation, if any: it can be renamed and exported. */
  conversationId?: string | null;
  /** Renames the open conversation; throws the node's error. */
  onRename?: (title: string) => Promise<void>;
  children: ReactNode;
}

export function ChatHeader({ title, drawerOpen, onMenu, conversationId, onRename, children }: Props) {
  const { t } = useI18n();
  const [renaming, setRenaming] = useState<string | null>(null);
  const editing = renaming !== null && renaming === conversationId && onRename;
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
      {editing ? (
        <RenameForm className="header-rename" title={title} onSave={onRename} onDone={() => setRenaming(null)} />
      ) : (
        <>
          <h1 className="chat-title" title={title}>
            {title}
          </h1>
          {conversationId && onRename && (
            <button
              type="button"
              className="icon-button header-rename-button"
              data-testid="header-rename"
              aria-label={t.renameConversation}
              title={t.rename}
              onClick={() => setRenaming(conversationId)}
            >
              <PencilIcon />
            </button>
          )}
        </>
      )}
      <div className="chat-tools">
        {conversationId && <ExportMenu key={conversationId} conversationId={conversationId} />}
        {children}
      </div>
    </header>
  );
}
