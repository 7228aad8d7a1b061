import { memo, useState } from 'react';
import type { Message } from '../protocol';
import { copyText } from '../lib/clipboard';
import { useI18n } from '../i18n/I18n';
import { failedReplyDetail } from '../lib/failures';
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
  const { t } = useI18n();
  return (
    <article
      className={`message ${role}${highlighted ? ' highlighted' : ''}`}
      data-highlighted={highlighted || undefined}
      data-testid="message"
      data-role={role}
      data-status={sending ? 'sending' : status}
      data-id={message.id}
      // The raw text, as the server holds it: what the end-to-end tests compare,
      // since the rendered Markdown drops its syntax and reflows as it grows.
      data-content={content}
      aria-busy={streaming || sending}
    >
      <h2 className="sr-only">{role === 'user' ? t.you : t.assistant}</h2>
      {role === 'assistant' && <div className="avatar" aria-hidden="true" />}
      <div className="message-body">
        {content ? <Markdown text={content} /> : streaming && <TypingDots />}
        {status === 'cancelled' && <p className="badge">{t.stopped}</p>}
        {status === 'failed' && <ReplyFailed error={message.error} onRetry={onRetry && (() => onRetry(message.id))} />}
        {sending && <p className="sending">{t.sending}</p>}
        {role === 'assistant' && !streaming && (
          <div className="message-actions">
            {content && <CopyButton text={content} />}
            {onRegenerate && status !== 'failed' && (
              <button type="button" className="icon-button" data-testid="regenerate" onClick={onRegenerate} title={t.regenerate}>
                <RefreshIcon />
                <span className="sr-only">{t.regenerateReply}</span>
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
  const { t } = useI18n();
  const detail = failedReplyDetail(error, t.failedReply);
  return (
    <div className="reply-failed" data-testid="reply-failed">
      <p>
        {t.failedReply}
        {detail && ` ${detail}`}
      </p>
      {onRetry && (
        <button type="button" className="retry" data-testid="retry" onClick={onRetry}>
          {t.retry}
        </button>
      )}
    </div>
  );
}

function TypingDots() {
  const { t } = useI18n();
  return (
    <span className="typing" role="img" aria-label={t.writing}>
      <span />
      <span />
      <span />
    </span>
  );
}

function CopyButton({ text }: { text: string }) {
  const [copied, setCopied] = useState(false);
  const { t } = useI18n();
  const copy = async () => {
    if (await copyText(text)) {
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    }
  };
  return (
    <button type="button" className="icon-button" onClick={copy} title={copied ? t.copied : t.copy}>
      {copied ? <CheckIcon /> : <CopyIcon />}
      <span className="sr-only">{copied ? t.copied : t.copyReply}</span>
    </button>
  );
}
