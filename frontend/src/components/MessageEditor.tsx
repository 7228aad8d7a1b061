import { useEffect, useId, useMemo, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { useI18n } from '../i18n/I18n';
import { checkDraft, MAX_CONTENT_CHARS, MAX_FRAME_BYTES } from '../lib/limits';

interface Props {
  initial: string;
  onSave: (text: string) => void;
  onCancel: () => void;
  /** Why saving is not possible now (a reply is being written), or null. */
  locked: string | null;
}

const MAX_HEIGHT = 320;
/** Stands for the message id an `edit` frame carries where `send` has the conversation's (a UUID either way). */
const EDIT_TARGET = '00000000-0000-0000-0000-000000000000';
const isMac = typeof navigator !== 'undefined' && /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);

/**
 * A question edited in place: Save (or Ctrl/⌘+Enter) asks for a new version
 * of it, Cancel (or Escape) puts the message back as it was.
 */
export function MessageEditor({ initial, onSave, onCancel, locked }: Props) {
  const { t, n } = useI18n();
  const [draft, setDraft] = useState(initial);
  const area = useRef<HTMLTextAreaElement>(null);
  const hintId = useId();

  useEffect(() => {
    const el = area.current;
    if (!el) return;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, []);

  useEffect(() => {
    const el = area.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, MAX_HEIGHT)}px`;
  }, [draft]);

  // An edit carries a message id where a send carries the conversation's: the same size.
  const check = useMemo(() => checkDraft(draft, { conversationId: EDIT_TARGET }), [draft]);
  const over = check.tooManyChars || check.tooManyBytes;
  const empty = draft.trim() === '';
  const blocked = locked ?? (empty ? t.editEmpty : null);

  const save = () => {
    if (blocked || over) return;
    onSave(draft);
  };
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      onCancel();
    } else if (event.key === 'Enter' && (event.ctrlKey || event.metaKey) && !event.nativeEvent.isComposing) {
      event.preventDefault();
      save();
    }
  };
  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    save();
  };

  const kb = (bytes: number) => n(bytes / 1024, bytes < 100 * 1024 ? 1 : 0);
  const limitMessage = check.tooManyChars
    ? t.tooManyChars(n(MAX_CONTENT_CHARS), n(check.chars - MAX_CONTENT_CHARS))
    : check.tooManyBytes
      ? t.tooManyBytes(kb(check.bytes), n(MAX_FRAME_BYTES / 1024))
      : null;

  return (
    <form className="message-editor" onSubmit={onSubmit} data-testid="editor">
      <textarea
        ref={area}
        data-testid="edit-input"
        aria-label={t.editLabel}
        aria-describedby={hintId}
        aria-invalid={over || undefined}
        rows={2}
        value={draft}
        onChange={(e) => setDraft(e.target.value)}
        onKeyDown={onKeyDown}
      />
      {limitMessage && (
        <p className="composer-limit" role="alert">
          {limitMessage}
        </p>
      )}
      <div className="message-editor-foot">
        <p id={hintId} className="composer-hint">
          <kbd>{isMac ? '⌘' : 'Ctrl'}</kbd>+<kbd>Enter</kbd> {t.hintToSave} · <kbd>Esc</kbd> {t.hintToCancel}
        </p>
        <div className="message-editor-buttons">
          <button type="button" className="small-button" data-testid="edit-cancel" onClick={onCancel}>
            {t.cancel}
          </button>
          <button
            type="submit"
            className="small-button primary"
            data-testid="edit-save"
            aria-disabled={blocked || over ? true : undefined}
            title={blocked ?? t.saveEdit}
          >
            {t.save}
          </button>
        </div>
      </div>
    </form>
  );
}
