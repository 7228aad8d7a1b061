import { memo, useRef, useState, type ReactNode, type Ref } from 'react';
import type { Message } from '../protocol';
import { copyText } from '../lib/clipboard';
import { useI18n } from '../i18n/I18n';
import { failedReplyDetail } from '../lib/failures';
import { BranchNav } from './BranchNav';
import { CheckIcon, CopyIcon, RefreshIcon } from './icons';
import { Markdown } from './Markdown';
import { MessageEditor } from './MessageEditor';

interface Props {
  message: Pick<Message, 'id' | 'role' | 'content' | 'status' | 'error'>;
  /** Shown while the server has not acknowledged the message yet. */
  sending?: boolean;
  /** This version's place among the versions of the message (0-based), and how many there are. */
  versionIndex?: number;
  versionCount?: number;
  /** The versions before and after this one, for ‹ and ›. */
  previousVersion?: string;
  nextVersion?: string;
  /** Show the version `id` in place of this one (`from`). */
  onShowVersion?: (id: string, from: string) => void;
  /** A new version of this reply. */
  onRegenerate?: (replyId: string) => void;
  /** A new version of this question, with the text given. */
  onEdit?: (messageId: string, content: string) => void;
  /** Offered on a reply that ended early (stopped, failed): a new version that goes on from its text. */
  onContinue?: (replyId: string) => void;
  /**
   * Why Edit, Regenerate and Continue cannot be used now (a reply is being
   * written, a request is on its way): shown disabled, saying so. Null: usable.
   */
  locked?: string | null;
  /** Offered on a reply that ended `failed`: asks its question again. */
  onRetry?: (replyId: string) => void;
  /** Briefly marked: the search result the user opened. */
  highlighted?: boolean;
}

export const MessageItem = memo(function MessageItem({
  message,
  sending = false,
  versionIndex = 0,
  versionCount = 1,
  previousVersion,
  nextVersion,
  onShowVersion,
  onRegenerate,
  onEdit,
  onContinue,
  locked = null,
  onRetry,
  highlighted = false,
}: Props) {
  const { role, content, status } = message;
  const streaming = status === 'streaming';
  const { t } = useI18n();
  /** The message being edited: another version shown closes the editor. */
  const [editing, setEditing] = useState<string | null>(null);
  const isEditing = editing === message.id && !sending;
  const editButton = useRef<HTMLButtonElement>(null);
  const closeEditor = () => {
    setEditing(null);
    // Back where the reader was (the button is there again once the editor is gone).
    requestAnimationFrame(() => editButton.current?.focus());
  };

  const nav =
    versionCount > 1 && onShowVersion && !sending ? (
      <BranchNav
        index={versionIndex}
        count={versionCount}
        previous={previousVersion}
        next={nextVersion}
        onShow={(id) => onShowVersion(id, message.id)}
        of={role === 'user' ? 'question' : 'reply'}
      />
    ) : null;
  const ended = status === 'cancelled' || status === 'failed';

  return (
    <article
      className={`message ${role}${highlighted ? ' highlighted' : ''}${isEditing ? ' editing' : ''}`}
      data-highlighted={highlighted || undefined}
      data-testid="message"
      data-role={role}
      data-status={sending ? 'sending' : status}
      data-id={message.id}
      data-version={versionCount > 1 ? `${versionIndex + 1}/${versionCount}` : undefined}
      // The raw text, as the server holds it: what the end-to-end tests compare,
      // since the rendered Markdown drops its syntax and reflows as it grows.
      data-content={content}
      aria-busy={streaming || sending}
    >
      <h2 className="sr-only">{role === 'user' ? t.you : t.assistant}</h2>
      {role === 'assistant' && <div className="avatar" aria-hidden="true" />}
      {isEditing ? (
        <MessageEditor
          initial={content}
          locked={locked}
          onCancel={closeEditor}
          onSave={(text) => {
            onEdit?.(message.id, text);
            closeEditor();
          }}
        />
      ) : (
        <div className="message-body">
          {content ? <Markdown text={content} /> : streaming && <TypingDots />}
          {status === 'cancelled' && <p className="badge">{t.stopped}</p>}
          {status === 'failed' && <ReplyFailed error={message.error} onRetry={onRetry && (() => onRetry(message.id))} />}
          {sending && <p className="sending">{t.sending}</p>}
          {role === 'assistant' && (!streaming || nav) && (
            <div className="message-actions">
              {nav}
              {!streaming && content && <CopyButton text={content} />}
              {!streaming && onRegenerate && status !== 'failed' && (
                <ActionButton testId="regenerate" label={t.regenerateReply} title={t.regenerate} locked={locked} onClick={() => onRegenerate(message.id)}>
                  <RefreshIcon />
                </ActionButton>
              )}
              {ended && onContinue && (
                <ActionButton
                  testId="continue"
                  label={t.continueReply}
                  title={t.continueReply}
                  locked={locked}
                  onClick={() => onContinue(message.id)}
                  className="pill-button"
                >
                  <ContinueIcon />
                  <span aria-hidden="true">{t.continue}</span>
                </ActionButton>
              )}
            </div>
          )}
        </div>
      )}
      {role === 'user' && !sending && !isEditing && (nav || onEdit) && (
        <div className="message-actions user-actions">
          {nav}
          {onEdit && (
            <ActionButton
              testId="edit"
              label={t.editMessage}
              title={t.edit}
              locked={locked}
              onClick={() => setEditing(message.id)}
              buttonRef={editButton}
            >
              <PencilIcon />
            </ActionButton>
          )}
        </div>
      )}
    </article>
  );
});

/**
 * A message action. Locked, it stays focusable and says why in its tooltip
 * (aria-disabled: a disabled button shows no tooltip and drops focus).
 */
function ActionButton({
  testId,
  label,
  title,
  locked,
  onClick,
  children,
  className = 'icon-button',
  buttonRef,
}: {
  testId: string;
  label: string;
  title: string;
  locked: string | null;
  onClick: () => void;
  children: ReactNode;
  className?: string;
  buttonRef?: Ref<HTMLButtonElement>;
}) {
  return (
    <button
      type="button"
      ref={buttonRef}
      className={className}
      data-testid={testId}
      aria-disabled={locked ? true : undefined}
      title={locked ?? title}
      onClick={() => {
        if (!locked) onClick();
      }}
    >
      {children}
      <span className="sr-only">{label}</span>
    </button>
  );
}

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

const Stroke = ({ children }: { children: ReactNode }) => (
  <svg width="16" height="16" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true" focusable="false">
    {children}
  </svg>
);
const PencilIcon = () => (
  <Stroke>
    <path d="M12 20h9" />
    <path d="M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4Z" />
  </Stroke>
);
const ContinueIcon = () => (
  <Stroke>
    <path d="M5 12h12M13 6l6 6-6 6" />
  </Stroke>
);
