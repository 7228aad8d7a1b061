import { useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { MAX_TITLE_CHARS } from '../api/http';
import { useI18n } from '../i18n/I18n';
import type { Dict } from '../i18n/en';
import { actionFailure } from '../lib/failures';

/** A pencil (24×24 grid), decorative: the button carries the label. */
export const PencilIcon = ({ size = 16 }: { size?: number }) => (
  <svg
    width={size}
    height={size}
    viewBox="0 0 24 24"
    fill="none"
    stroke="currentColor"
    strokeWidth="2"
    strokeLinecap="round"
    strokeLinejoin="round"
    aria-hidden="true"
    focusable="false"
  >
    <path d="M12 20h9" />
    <path d="M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4Z" />
  </svg>
);

/** Why a title cannot be sent, checked before asking the node (which checks the same), or null. */
export function titleProblem(title: string, t: Pick<Dict, 'titleEmpty' | 'titleTooLong'>, n: (v: number) => string): string | null {
  const trimmed = title.trim();
  if (trimmed === '') return t.titleEmpty;
  // Unicode scalar values, as the node counts.
  if ([...trimmed].length > MAX_TITLE_CHARS) return t.titleTooLong(n(MAX_TITLE_CHARS));
  return null;
}

/** The sentence for a failed rename, in the UI's language (never a bare code, never English in Vietnamese). */
export function renameFailure(error: unknown, t: Dict): string {
  return actionFailure(t.renameFailed, error, t, t.renameCodes);
}

interface Props {
  title: string;
  /** Saves the title; throws the node's error. */
  onSave: (title: string) => Promise<void>;
  onDone: () => void;
  className?: string;
}

/**
 * A conversation's title, edited in place: Enter (or Save) renames it, Escape
 * (or Cancel) leaves it as it was. A refused title stays in the box with a
 * sentence saying why.
 */
export function RenameForm({ title, onSave, onDone, className = '' }: Props) {
  const { t, n } = useI18n();
  const [value, setValue] = useState(title);
  const [problem, setProblem] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const problemId = useId();
  useEffect(() => {
    input.current?.focus();
    input.current?.select();
  }, []);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (saving) return;
    const found = titleProblem(value, t, n);
    if (found) {
      setProblem(found);
      return;
    }
    if (value.trim() === title.trim()) {
      onDone();
      return;
    }
    setSaving(true);
    try {
      await onSave(value.trim());
      onDone();
    } catch (error) {
      setProblem(renameFailure(error, t));
      setSaving(false);
      input.current?.focus();
    }
  };
  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      onDone();
    }
  };

  return (
    <form className={`rename-form ${className}`} onSubmit={(e) => void submit(e)} data-testid="rename-form">
      <input
        ref={input}
        className="rename-input"
        data-testid="rename-input"
        aria-label={t.newTitle}
        aria-invalid={problem !== null}
        aria-describedby={problem ? problemId : undefined}
        value={value}
        onChange={(e) => {
          setValue(e.target.value);
          setProblem(null);
        }}
        onKeyDown={onKeyDown}
        disabled={saving}
      />
      <button type="submit" className="small-button primary" data-testid="rename-save" disabled={saving}>
        {t.save}
      </button>
      <button type="button" className="small-button" onClick={onDone}>
        {t.cancel}
      </button>
      {problem && (
        <p id={problemId} className="rename-problem" role="alert" data-testid="rename-problem">
          {problem}
        </p>
      )}
    </form>
  );
}
