import { useEffect, useRef, useState } from 'react';
import type { ConversationSummary } from '../api/http';
import { en } from '../i18n/en';
import { useI18n } from '../i18n/I18n';
import { groupByDay } from '../lib/groups';
import { TrashIcon } from './icons';
import { PencilIcon, RenameForm } from './RenameForm';

interface Props {
  conversations: readonly ConversationSummary[];
  loaded: boolean;
  current: string | null;
  onOpen: () => void;
  onDelete: (id: string) => void;
  /** Renames a conversation (`PATCH`); throws the node's error, which the row shows. */
  onRename?: (id: string, title: string) => Promise<void>;
  /** More (older) conversations can be loaded. */
  hasMore?: boolean;
  loadingMore?: boolean;
  onLoadMore?: () => void;
}

/** Titles are the first message's start, Markdown included: show them as plain text. */
export const titleOf = (c: Pick<ConversationSummary, 'title'>, untitled: string = en.untitledChat) =>
  c.title?.replace(/[*_`~#>]+/g, '').replace(/\s+/g, ' ').trim() || untitled;

export function ConversationList({
  conversations,
  loaded,
  current,
  onOpen,
  onDelete,
  onRename,
  hasMore = false,
  loadingMore = false,
  onLoadMore,
}: Props) {
  // Deleting asks once, inline, instead of a modal dialog.
  const [confirming, setConfirming] = useState<string | null>(null);
  const [renaming, setRenaming] = useState<string | null>(null);
  /** After a rename, focus goes back to that row's rename button (for keyboard users), once it is shown again. */
  const refocus = useRef<string | null>(null);
  useEffect(() => {
    const id = refocus.current;
    const button = id ? document.querySelector<HTMLElement>(`[data-id="${CSS.escape(id)}"] [data-testid=rename]`) : null;
    if (!button) return;
    refocus.current = null;
    button.focus();
  });
  const { t } = useI18n();
  const title = (c: ConversationSummary) => titleOf(c, t.untitledChat);

  if (!loaded) return <p className="list-note">{t.loading}</p>;
  if (conversations.length === 0) return <p className="list-note">{t.noConversations}</p>;

  return (
    <nav className="conversation-list" aria-label={t.conversationsLabel}>
      {groupByDay(conversations, (c) => c.updated_at, new Date(), t).map((group) => (
        <section key={group.label}>
          <h2 className="group-label">{group.label}</h2>
          <ul>
            {group.items.map((c) =>
              confirming === c.id ? (
                <ConfirmDelete
                  key={c.id}
                  title={title(c)}
                  onConfirm={() => {
                    setConfirming(null);
                    onDelete(c.id);
                  }}
                  onCancel={() => setConfirming(null)}
                />
              ) : renaming === c.id && onRename ? (
                <li key={c.id} className="conversation renaming" data-testid="conversation" data-id={c.id}>
                  <RenameForm
                    title={c.title ? titleOf(c, '') : ''}
                    onSave={(newTitle) => onRename(c.id, newTitle)}
                    onDone={() => {
                      refocus.current = c.id;
                      setRenaming(null);
                    }}
                  />
                </li>
              ) : (
                <li key={c.id} className="conversation" data-testid="conversation" data-id={c.id}>
                  <a href={`#/c/${c.id}`} aria-current={c.id === current ? 'page' : undefined} onClick={onOpen}>
                    {title(c)}
                  </a>
                  {onRename && (
                    <button
                      type="button"
                      className="icon-button rename"
                      data-testid="rename"
                      aria-label={t.renameTitled(title(c))}
                      title={t.rename}
                      onClick={() => setRenaming(c.id)}
                    >
                      <PencilIcon />
                    </button>
                  )}
                  <button
                    type="button"
                    className="icon-button delete"
                    aria-label={t.deleteTitled(title(c))}
                    title={t.delete}
                    onClick={() => setConfirming(c.id)}
                  >
                    <TrashIcon />
                  </button>
                </li>
              ),
            )}
          </ul>
        </section>
      ))}
      {hasMore && onLoadMore && <ShowMore loading={loadingMore} onLoadMore={onLoadMore} />}
    </nav>
  );
}

/**
 * The end of the loaded list: a button, pressed by itself when it scrolls
 * into view (so scrolling down loads the next page), by hand otherwise.
 */
function ShowMore({ loading, onLoadMore }: { loading: boolean; onLoadMore: () => void }) {
  const button = useRef<HTMLButtonElement>(null);
  const latest = useRef(onLoadMore);
  useEffect(() => {
    latest.current = onLoadMore;
  });
  const { t } = useI18n();
  useEffect(() => {
    const el = button.current;
    if (!el || typeof IntersectionObserver === 'undefined') return;
    // Its scrolling container is the sidebar list; start a little before the end shows.
    const observer = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && latest.current(), {
      root: el.closest('.sidebar-list'),
      rootMargin: '0px 0px 200px 0px',
    });
    observer.observe(el);
    return () => observer.disconnect();
    // A new observer after each page: if the end is still in view, it loads the next one too.
  }, [loading]);
  return (
    <button
      type="button"
      ref={button}
      className="show-more"
      data-testid="show-more"
      onClick={onLoadMore}
      disabled={loading}
      aria-busy={loading}
    >
      {loading ? t.loading : t.showMore}
    </button>
  );
}

function ConfirmDelete({ title, onConfirm, onCancel }: { title: string; onConfirm: () => void; onCancel: () => void }) {
  const cancel = useRef<HTMLButtonElement>(null);
  const { t } = useI18n();
  useEffect(() => cancel.current?.focus(), []);
  return (
    <li className="conversation confirming">
      <span className="confirm-text" title={title}>
        {t.deleteThisChat}
      </span>
      <button
        type="button"
        className="small-button danger"
        data-testid="confirm-delete"
        onClick={onConfirm}
        onKeyDown={(e) => e.key === 'Escape' && onCancel()}
      >
        {t.delete}
      </button>
      <button type="button" className="small-button" ref={cancel} onClick={onCancel} onKeyDown={(e) => e.key === 'Escape' && onCancel()}>
        {t.cancel}
      </button>
    </li>
  );
}
