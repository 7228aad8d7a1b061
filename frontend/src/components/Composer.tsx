import { useEffect, useMemo, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { useI18n } from '../i18n/I18n';
import { checkDraft, MAX_CONTENT_CHARS, MAX_FRAME_BYTES } from '../lib/limits';
import { ArrowUpIcon, StopIcon } from './icons';

interface Props {
  value: string;
  onChange: (value: string) => void;
  /** Returns false when the message could not be sent now. */
  onSend: (text: string) => boolean;
  /** A reply is being written: the button stops it instead of sending. */
  streaming: boolean;
  stopping: boolean;
  onStop: () => void;
  /** Waiting for the server to take the previous message. */
  busy: boolean;
  /** Changes when another conversation opens, to move focus here. */
  focusKey: string;
  /** Grows when the page asks for the message box (a suggestion was picked): focus it, caret at the end. */
  focusRequest?: number;
  /** Where the message would go, and with which model: part of the frame whose size is checked. */
  conversationId?: string | null;
  model?: string;
}

const MAX_HEIGHT = 220;

export function Composer({
  value,
  onChange,
  onSend,
  streaming,
  stopping,
  onStop,
  busy,
  focusKey,
  focusRequest = 0,
  conversationId = null,
  model,
}: Props) {
  const area = useRef<HTMLTextAreaElement>(null);
  const { t, n } = useI18n();
  /** Enter was pressed while the previous turn is not over: say why nothing happened. */
  const [waitHint, setWaitHint] = useState(false);

  // Grow with the text up to a limit, then scroll inside.
  useEffect(() => {
    const el = area.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, MAX_HEIGHT)}px`;
  }, [value]);

  // On touch screens focusing would pop the keyboard over the conversation.
  useEffect(() => {
    if (window.matchMedia('(pointer: fine)').matches) area.current?.focus();
  }, [focusKey]);

  // Asked for explicitly (a suggestion picked): focus wherever, the caret after the text.
  useEffect(() => {
    const el = area.current;
    if (focusRequest === 0 || !el) return;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, [focusRequest]);

  // The hint goes once the turn is over (state adjusted while rendering, not in an effect).
  if (waitHint && !streaming && !busy) setWaitHint(false);

  // Nothing is cut: a draft over a limit stays as it is, says so, and is not sent.
  const check = useMemo(() => checkDraft(value, { conversationId, model }), [value, conversationId, model]);
  const over = check.tooManyChars || check.tooManyBytes;
  const canSend = value.trim() !== '' && !streaming && !busy && !over;

  const submit = () => {
    if (value.trim() === '' || over) return;
    if (streaming || busy) {
      setWaitHint(true);
      return;
    }
    if (onSend(value)) onChange('');
  };
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    // isComposing: Enter that confirms an IME candidate must not send.
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      submit();
    }
  };
  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    submit();
  };

  const kb = (bytes: number) => n(bytes / 1024, bytes < 100 * 1024 ? 1 : 0);
  const counter = !check.near
    ? null
    : check.measure === 'bytes'
      ? t.counterBytes(kb(check.bytes), n(MAX_FRAME_BYTES / 1024))
      : t.counterChars(n(check.chars), n(MAX_CONTENT_CHARS));
  const limitMessage = check.tooManyChars
    ? t.tooManyChars(n(MAX_CONTENT_CHARS), n(check.chars - MAX_CONTENT_CHARS))
    : check.tooManyBytes
      ? t.tooManyBytes(kb(check.bytes), n(MAX_FRAME_BYTES / 1024))
      : null;
  const waiting = waitHint && (streaming || busy) ? (streaming ? t.waitForReply : t.waitForSend) : null;
  const describedBy = [limitMessage ? 'composer-limit' : waiting ? 'composer-wait' : 'composer-hint', counter && 'composer-counter']
    .filter(Boolean)
    .join(' ');

  return (
    <form className="composer" onSubmit={onSubmit}>
      <div className="composer-box" data-over={over || undefined}>
        <label htmlFor="composer-input" className="sr-only">
          {t.messageLabel}
        </label>
        <textarea
          id="composer-input"
          ref={area}
          data-testid="composer"
          rows={1}
          value={value}
          placeholder={t.placeholder}
          aria-describedby={describedBy}
          aria-invalid={over || undefined}
          onChange={(e) => onChange(e.target.value)}
          onKeyDown={onKeyDown}
        />
        {streaming ? (
          <button
            type="button"
            className="round-button stop"
            data-testid="stop"
            onClick={onStop}
            disabled={stopping}
            aria-label={stopping ? t.stopping : t.stopGenerating}
            title={t.stopGenerating}
          >
            <StopIcon />
          </button>
        ) : (
          <button
            type="submit"
            className="round-button send"
            data-testid="send"
            disabled={!canSend}
            aria-label={t.sendMessage}
            title={t.sendMessage}
          >
            <ArrowUpIcon />
          </button>
        )}
      </div>
      <div className="composer-foot">
        {limitMessage ? (
          <p id="composer-limit" className="composer-limit" role="alert" data-testid="composer-limit">
            {limitMessage}
          </p>
        ) : waiting ? (
          <p id="composer-wait" className="composer-wait" role="status" data-testid="composer-wait">
            {waiting}
          </p>
        ) : (
          <p id="composer-hint" className="composer-hint">
            <kbd>Enter</kbd> {t.hintToSend} · <kbd>Shift</kbd>+<kbd>Enter</kbd> {t.hintNewLine}
          </p>
        )}
        {counter && (
          <span id="composer-counter" className="composer-counter" data-testid="composer-counter" data-over={over || undefined}>
            {counter}
          </span>
        )}
      </div>
    </form>
  );
}
