import { useI18n } from '../i18n/I18n';

/** A new chat: a greeting and suggestions; picking one puts it in the message box, ready to send. */
export function EmptyState({ onPick }: { onPick: (text: string) => void }) {
  const { t } = useI18n();
  return (
    <div className="empty">
      <h2>{t.emptyTitle}</h2>
      <p>{t.emptyText}</p>
      <ul className="suggestions" aria-label={t.suggestionsLabel}>
        {t.suggestions.map((s) => (
          <li key={s}>
            <button type="button" data-testid="suggestion" onClick={() => onPick(s)}>
              {s}
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}
