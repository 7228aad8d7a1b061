import type { ReactNode } from 'react';
import type { Theme } from '../hooks/useTheme';
import { useI18n } from '../i18n/I18n';
import { MonitorIcon, MoonIcon, SunIcon } from './icons';

const OPTIONS: { value: Theme; label: 'themeSystem' | 'themeLight' | 'themeDark'; icon: ReactNode }[] = [
  { value: 'system', label: 'themeSystem', icon: <MonitorIcon /> },
  { value: 'light', label: 'themeLight', icon: <SunIcon /> },
  { value: 'dark', label: 'themeDark', icon: <MoonIcon /> },
];

/** A radio group styled as a segmented control: arrow keys move between options. */
export function ThemeSwitch({ theme, onChange }: { theme: Theme; onChange: (theme: Theme) => void }) {
  const { t } = useI18n();
  return (
    <fieldset className="theme-switch">
      <legend className="sr-only">{t.theme}</legend>
      {OPTIONS.map((o) => (
        <label key={o.value} title={t[o.label]}>
          <input
            type="radio"
            name="theme"
            value={o.value}
            checked={theme === o.value}
            onChange={() => onChange(o.value)}
            className="sr-only"
          />
          {o.icon}
          <span className="sr-only">{t[o.label]}</span>
        </label>
      ))}
    </fieldset>
  );
}
