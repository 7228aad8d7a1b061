import { useEffect, useRef, type FormEvent, type KeyboardEvent } from 'react';
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
}

const MAX_LENGTH = 32_000;
const MAX_HEIGHT = 220;

export function Composer({ value, onChange, onSend, streaming, stopping, onStop, busy, focusKey }: Props) {
  const area = useRef<HTMLTextAreaElement>(null);

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

  const canSend = value.trim() !== '' && !streaming && !busy;
  const submit = () => {
    if (canSend && onSend(value)) onChange('');
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

  return (
    <form className="composer" onSubmit={onSubmit}>
      <div className="composer-box">
        <label htmlFor="composer-input" className="sr-only">
          Message
        </label>
        <textarea
          id="composer-input"
          ref={area}
          data-testid="composer"
          rows={1}
          maxLength={MAX_LENGTH}
          value={value}
          placeholder="Message chatstream"
          aria-describedby="composer-hint"
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
            aria-label={stopping ? 'Stopping' : 'Stop generating'}
            title="Stop generating"
          >
            <StopIcon />
          </button>
        ) : (
          <button
            type="submit"
            className="round-button send"
            data-testid="send"
            disabled={!canSend}
            aria-label="Send message"
            title="Send message"
          >
            <ArrowUpIcon />
          </button>
        )}
      </div>
      <p id="composer-hint" className="composer-hint">
        <kbd>Enter</kbd> to send · <kbd>Shift</kbd>+<kbd>Enter</kbd> for a new line
      </p>
    </form>
  );
}
