import { useEffect, useLayoutEffect, useRef, useState, type RefObject } from 'react';
import type { Message, PendingSend } from '../protocol';
import { useAutoFollow } from '../hooks/useAutoFollow';
import { useI18n } from '../i18n/I18n';
import type { MessageTarget } from '../hooks/useRoute';
import { ArrowDownIcon } from './icons';
import { MessageItem } from './MessageItem';

interface Props {
  conversationKey: string;
  messages: readonly Message[];
  pending: readonly PendingSend[];
  /** Offered on the last reply when it can be asked for again. */
  onRegenerate?: () => void;
  /** Offered on replies that ended `failed`, to ask their question again. */
  onRetry?: (replyId: string) => void;
  /** Bring this message into view and highlight it briefly (a search result was opened). */
  target?: MessageTarget | null;
}

/** How long an opened search result stays highlighted. */
const HIGHLIGHT_MS = 2500;

export function MessageList({ conversationKey, messages, pending, onRegenerate, onRetry, target }: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  const last = messages.at(-1);
  // Anything that makes the list taller: a new message, pending or a longer last text.
  const growth = `${messages.length}:${pending.length}:${last?.content.length ?? 0}:${last?.status}`;
  const { following, jump, settle } = useAutoFollow(scroller, growth, conversationKey);
  const { t } = useI18n();
  const highlighted = useShowTarget(scroller, target ?? null, messages, settle);

  return (
    <div className="messages-wrap">
      <div className="messages" ref={scroller} role="log" aria-label={t.messagesLabel} aria-relevant="additions" tabIndex={0}>
        <div className="messages-inner">
          {messages.map((m) => (
            <MessageItem
              key={m.id}
              message={m}
              onRegenerate={m === last ? onRegenerate : undefined}
              onRetry={m.status === 'failed' ? onRetry : undefined}
              highlighted={m.id === highlighted}
            />
          ))}
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
  const [highlighted, setHighlighted] = useState<string | null>(null);
  const message = target?.message ?? null;
  const visit = target?.visit ?? null;

  // After useAutoFollow's own layout effects (declared before), so that its
  // scroll to the bottom of a newly shown conversation comes first.
  useLayoutEffect(() => {
    if (message === null || visit === null || shown.current === visit) return;
    if (!messages.some((m) => m.id === message)) return; // not loaded yet
    const el = scroller.current?.querySelector(`[data-id="${CSS.escape(message)}"]`);
    if (!el) return;
    shown.current = visit;
    el.scrollIntoView({ block: 'center' });
    // Away from the bottom now: the view stops following the reply.
    settle();
    setHighlighted(message);
  }, [message, visit, messages, scroller, settle]);

  useEffect(() => {
    if (highlighted === null) return;
    const timer = setTimeout(() => setHighlighted(null), HIGHLIGHT_MS);
    return () => clearTimeout(timer);
  }, [highlighted, visit]);

  return highlighted;
}
