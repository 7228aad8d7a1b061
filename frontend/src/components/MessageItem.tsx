import { memo, useState } from 'react';
import type { Message } from '../protocol';
import { copyText } from '../lib/clipboard';
import { FAILED_REPLY_TEXT, failedReplyDetail } from '../lib/failures';
import { CheckIcon, CopyIcon, RefreshIcon } from './icons';
import { Markdown } from './Markdown';

interface Props {
  message: Pick<Message, 'id' | 'role' | 'content' | 'status' | 'error'>;
  /** Shown while the server has not acknowledged the message yet. */
  sending?: boolean;
  onRegenerate?: () => void;
  /** Offered on a reply that ended `failed`: asks its question again. */
  onRetry?: (replyId: string) => void;
  /** Briefly marked: the search result the user opened. */
  highlighted?: boolean;
}

export const MessageItem = memo(function MessageItem({ message, sending = false, onRegenerate, onRetry, highlighted = false }: Props) {
  const { role, content, status } = message;
  const streaming = status === 'streaming';
  return (
    <article
      className={`message ${role}${highlighted ? ' highlighted' : ''}`}
      data-highlighted={highlighted || undefined}
      data-testid="message"
      data-role={role}
      data-status={sending ? 'sending' : status}
      data-id={message.id}
      aria-busy={streaming || sending}
    >
      <h2 className="sr-only">{role === 'user' ? 'You' : 'Assistant'}</h2>
      {role === 'assistant' && <div className="avatar" aria-hidden="true" />}
      <div className="message-body">
        {content ? <Markdown text={content} /> : streaming && <TypingDots />}
        {status === 'cancelled' && <p className="badge">Stopped</p>}
        {status === 'failed' && <ReplyFailed error={message.error} onRetry={onRetry && (() => onRetry(message.id))} />}
        {sending && <p className="sending">Sending…</p>}
        {role === 'assistant' && !streaming && (
          <div className="message-actions">
            {content && <CopyButton text={content} />}
            {onRegenerate && status !== 'failed' && (
              <button type="button" className="icon-button" data-testid="regenerate" onClick={onRegenerate} title="Regenerate">
                <RefreshIcon />
                <span className="sr-only">Regenerate reply</span>
              </button>
            )}
          </div>
        )}
      </div>
    </article>
  );
});

/** A reply that could not be completed: said plainly, with the server's reason if it gave one. */
function ReplyFailed({ error, onRetry }: { error?: string; onRetry?: () => void }) {
  const detail = failedReplyDetail(error);
  return (
    <div className="reply-failed" data-testid="reply-failed">
      <p>
        {FAILED_REPLY_TEXT}
        {detail && ` ${detail}`}
      </p>
      {onRetry && (
        <button type="button" className="retry" data-testid="retry" onClick={onRetry}>
          Retry
        </button>
      )}
    </div>
  );
}

function TypingDots() {
  return (
    <span className="typing" role="img" aria-label="Writing">
      <span />
      <span />
      <span />
    </span>
  );
}

function CopyButton({ text }: { text: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    if (await copyText(text)) {
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    }
  };
  return (
    <button type="button" className="icon-button" onClick={copy} title={copied ? 'Copied' : 'Copy'}>
      {copied ? <CheckIcon /> : <CopyIcon />}
      <span className="sr-only">{copied ? 'Copied' : 'Copy reply'}</span>
    </button>
  );
}
