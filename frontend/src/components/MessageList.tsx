import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState, type RefObject } from 'react';
import { parentKey, type Message, type PathStep, type PendingSend, type PendingVersion } from '../protocol';
import type { BranchActions } from '../hooks/useChat';
import { useAutoFollow } from '../hooks/useAutoFollow';
import { useI18n } from '../i18n/I18n';
import type { MessageTarget } from '../hooks/useRoute';
import { ArrowDownIcon } from './icons';
import { MessageItem } from './MessageItem';

interface Props {
  conversationKey: string;
  /** The messages shown, with the versions at each level (`useConversationView`). */
  path: readonly PathStep[];
  pending: readonly PendingSend[];
  /** New versions asked for and not shown yet: an edit shows its new text meanwhile. */
  versions?: readonly PendingVersion[];
  /** Edit, Regenerate, Continue and ‹ 2/3 ›; absent, none is offered. */
  actions?: BranchActions;
  /** Why Edit, Regenerate and Continue cannot be used now, or null. */
  locked?: string | null;
  /** Offered on replies that ended `failed`, to ask their question again. */
  onRetry?: (replyId: string) => void;
  /** Bring this message into view and highlight it briefly (a search result was opened). */
  target?: MessageTarget | null;
}

/** How long an opened search result stays highlighted. */
const HIGHLIGHT_MS = 2500;

export function MessageList({ conversationKey, path, pending, versions = [], actions, locked = null, onRetry, target }: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  const messages = useMemo(() => path.map((s) => s.message), [path]);
  const last = messages.at(-1);
  // Anything that makes the list taller: a new message, pending or a longer last text.
  const growth = `${messages.length}:${pending.length}:${last?.content.length ?? 0}:${last?.status}`;
  const { following, jump, settle } = useAutoFollow(scroller, growth, conversationKey);
  const { t } = useI18n();
  const highlighted = useShowTarget(scroller, target ?? null, messages, settle);
  const showVersion = useKeepInPlace(scroller, path, actions?.showVersion, settle);

  return (
    <div className="messages-wrap">
      <div className="messages" ref={scroller} role="log" aria-label={t.messagesLabel} aria-relevant="additions">
        <div className="messages-inner">
          {path.map(({ message: m, siblings, index }) => {
            const edit = versions.find((v) => v.kind === 'edit' && v.messageId === m.id);
            return (
              <MessageItem
                // One element per level: another version of a message takes its
                // place (and the ‹ › button keeps the focus).
                key={`level:${parentKey(m)}`}
                message={edit?.content !== undefined ? { ...m, content: edit.content } : m}
                sending={edit !== undefined}
                versionIndex={index}
                versionCount={siblings.length}
                previousVersion={siblings[index - 1]}
                nextVersion={siblings[index + 1]}
                onShowVersion={showVersion}
                onRegenerate={m.role === 'assistant' ? actions?.regenerate : undefined}
                onEdit={m.role === 'user' ? actions?.edit : undefined}
                onContinue={m.role === 'assistant' ? actions?.continueReply : undefined}
                locked={locked}
                onRetry={m.status === 'failed' ? onRetry : undefined}
                highlighted={m.id === highlighted}
              />
            );
          })}
          {pending.map((p) => (
            <MessageItem
              key={p.requestId}
              message={{ id: p.requestId, role: 'user', content: p.content, status: 'complete' }}
              sending
            />
          ))}
        </div>
      </div>
      {!following && (
        <button type="button" className="jump" onClick={jump}>
          <ArrowDownIcon />
          <span>{t.jumpToLatest}</span>
        </button>
      )}
    </div>
  );
}

/** The element of the message `id` in `within`, if shown. */
const messageElement = (within: ParentNode, id: string) => within.querySelector(`[data-id="${CSS.escape(id)}"]`);

/**
 * Another version of a message shown (‹ 2/3 ›): the message stays where it
 * was on screen, whatever the new texts' lengths (the view does not jump to
 * the bottom, which would take the ‹ › away from under the pointer).
 */
function useKeepInPlace(
  scroller: RefObject<HTMLDivElement | null>,
  path: readonly PathStep[],
  show: ((id: string) => void) | undefined,
  settle: () => void,
): ((id: string, from: string) => void) | undefined {
  /** The version asked for, and where the one it replaces was (in the window; the list does not move). */
  const anchor = useRef<{ id: string; top: number } | null>(null);
  const showVersion = useCallback(
    (id: string, from: string) => {
      const el = messageElement(document, from);
      anchor.current = el ? { id, top: el.getBoundingClientRect().top } : null;
      show?.(id);
    },
    [show],
  );
  // After useAutoFollow's own layout effects (declared before), which may have pinned the view to the bottom.
  useLayoutEffect(() => {
    const list = scroller.current;
    const held = anchor.current;
    const el = list && held ? messageElement(list, held.id) : null;
    if (!list || !held || !el) return;
    anchor.current = null;
    list.scrollBy(0, el.getBoundingClientRect().top - held.top);
    settle();
  }, [path, scroller, settle]);
  return show ? showVersion : undefined;
}

/**
 * Once the target message is shown, scroll it to the middle of the view (once
 * per navigation: opening the same result again scrolls again) and return
 * its id while it is highlighted.
 */
function useShowTarget(
  scroller: RefObject<HTMLDivElement | null>,
  target: MessageTarget | null,
  messages: readonly Message[],
  settle: () => void,
): string | null {
  const shown = useRef<number | null>(null);
  /** The navigation whose highlight has run its time. */
  const [faded, setFaded] = useState<number | null>(null);
  const message = target?.message ?? null;
  const visit = target?.visit ?? null;
  // Highlighted from the render that shows it until its time is up (derived, not set in an effect).
  const loaded = message !== null && messages.some((m) => m.id === message);
  const highlighted = loaded && visit !== null && visit !== faded ? message : null;

  // After useAutoFollow's own layout effects (declared before), so that its
  // scroll to the bottom of a newly shown conversation comes first.
  useLayoutEffect(() => {
    if (highlighted === null || shown.current === visit) return;
    const el = scroller.current ? messageElement(scroller.current, highlighted) : null;
    if (!el) return;
    shown.current = visit;
    el.scrollIntoView({ block: 'center' });
    // Away from the bottom now: the view stops following the reply.
    settle();
  }, [highlighted, visit, scroller, settle]);

  useEffect(() => {
    if (highlighted === null) return;
    const timer = setTimeout(() => setFaded(visit), HIGHLIGHT_MS);
    return () => clearTimeout(timer);
  }, [highlighted, visit]);

  return highlighted;
}
