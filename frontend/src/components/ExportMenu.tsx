import { useEffect, useRef, useState } from 'react';
import { getConversation } from '../api/http';
import { useI18n } from '../i18n/I18n';
import { conversationJson, conversationMarkdown, download, exportFileName, exportLabels } from '../lib/exporting';
import { actionFailure } from '../lib/failures';

export const DownloadIcon = () => (
  <svg
    width={18}
    height={18}
    viewBox="0 0 24 24"
    fill="none"
    stroke="currentColor"
    strokeWidth="2"
    strokeLinecap="round"
    strokeLinejoin="round"
    aria-hidden="true"
    focusable="false"
  >
    <path d="M12 4v11M7 10l5 5 5-5M5 20h14" />
  </svg>
);

/**
 * Export the open conversation: a button that shows two choices, Markdown
 * (the active path) and JSON (the whole tree). The conversation is fetched
 * afresh (`GET /api/conversations/{id}`), so the file holds every version,
 * also those not shown.
 */
export function ExportMenu({ conversationId }: { conversationId: string }) {
  const { t } = useI18n();
  const [open, setOpen] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const root = useRef<HTMLDivElement>(null);

  // Closes on Escape and on a click elsewhere.
  useEffect(() => {
    if (!open) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== 'Escape') return;
      setOpen(false);
      root.current?.querySelector<HTMLButtonElement>('[data-testid=export]')?.focus();
    };
    const onPointer = (e: PointerEvent) => {
      if (!root.current?.contains(e.target as Node)) setOpen(false);
    };
    document.addEventListener('keydown', onKey);
    document.addEventListener('pointerdown', onPointer);
    return () => {
      document.removeEventListener('keydown', onKey);
      document.removeEventListener('pointerdown', onPointer);
    };
  }, [open]);

  const exportAs = async (format: 'md' | 'json') => {
    setBusy(true);
    setProblem(null);
    try {
      const conversation = await getConversation(conversationId);
      const now = new Date();
      if (format === 'md') {
        const text = conversationMarkdown(conversation, exportLabels(t), now);
        download(exportFileName(conversation.title, 'md'), text, 'text/markdown;charset=utf-8');
      } else {
        download(exportFileName(conversation.title, 'json'), conversationJson(conversation, now), 'application/json');
      }
      setOpen(false);
    } catch (error) {
      setProblem(actionFailure(t.exportFailed, error, t));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="export" ref={root}>
      <button
        type="button"
        className="icon-button"
        data-testid="export"
        aria-label={t.exportMenu}
        title={t.exportMenu}
        aria-expanded={open}
        aria-controls="export-choices"
        onClick={() => setOpen((v) => !v)}
      >
        <DownloadIcon />
      </button>
      {open && (
        <div id="export-choices" className="export-choices" role="group" aria-label={t.exportMenu}>
          <button type="button" data-testid="export-markdown" disabled={busy} onClick={() => void exportAs('md')}>
            {t.exportMarkdown}
          </button>
          <button type="button" data-testid="export-json" disabled={busy} onClick={() => void exportAs('json')}>
            {t.exportJson}
          </button>
          {problem && (
            <p className="export-problem" role="alert" data-testid="export-problem">
              {problem}
            </p>
          )}
        </div>
      )}
    </div>
  );
}
