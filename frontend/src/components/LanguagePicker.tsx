import { dictionary, isLang, LANGUAGES } from '../i18n';
import { useI18n } from '../i18n/I18n';

/** The UI's language; each option is written in its own language. */
export function LanguagePicker() {
  const { lang, t, setLang } = useI18n();
  return (
    <label className="language-picker">
      <span>{t.language}</span>
      <select data-testid="language" value={lang} onChange={(e) => isLang(e.target.value) && setLang(e.target.value)}>
        {LANGUAGES.map((id) => (
          <option key={id} value={id} lang={id}>
            {dictionary(id).langName}
          </option>
        ))}
      </select>
    </label>
  );
}
