import { useRef } from 'react';
import type { Message, PendingSend } from '../protocol';
import { useAutoFollow } from '../hooks/useAutoFollow';
import { ArrowDownIcon } from './icons';
import { MessageItem } from './MessageItem';

interface Props {
  conversationKey: string;
  messages: readonly Message[];
  pending: readonly PendingSend[];
  /** Offered on the last reply when it can be asked for again. */
  onRegenerate?: () => void;
}

export function MessageList({ conversationKey, messages, pending, onRegenerate }: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  const last = messages.at(-1);
  // Anything that makes the list taller: a new message, pending or a longer last text.
  const growth = `${messages.length}:${pending.length}:${last?.content.length ?? 0}:${last?.status}`;
  const { atBottom, jump } = useAutoFollow(scroller, growth, conversationKey);

  return (
    <div className="messages-wrap">
      <div className="messages" ref={scroller} role="log" aria-label="Messages" aria-relevant="additions" tabIndex={0}>
        <div className="messages-inner">
          {messages.map((m) => (
            <MessageItem key={m.id} message={m} onRegenerate={m === last ? onRegenerate : undefined} />
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
      {!atBottom && (
        <button type="button" className="jump" onClick={jump}>
          <ArrowDownIcon />
          <span>Jump to latest</span>
        </button>
      )}
    </div>
  );
}
