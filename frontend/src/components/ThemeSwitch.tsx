import type { ReactNode } from 'react';
import type { Theme } from '../hooks/useTheme';
import { MonitorIcon, MoonIcon, SunIcon } from './icons';

const OPTIONS: { value: Theme; label: string; icon: ReactNode }[] = [
  { value: 'system', label: 'System theme', icon: <MonitorIcon /> },
  { value: 'light', label: 'Light theme', icon: <SunIcon /> },
  { value: 'dark', label: 'Dark theme', icon: <MoonIcon /> },
];

/** A radio group styled as a segmented control: arrow keys move between options. */
export function ThemeSwitch({ theme, onChange }: { theme: Theme; onChange: (theme: Theme) => void }) {
  return (
    <fieldset className="theme-switch">
      <legend className="sr-only">Theme</legend>
      {OPTIONS.map((o) => (
        <label key={o.value} title={o.label}>
          <input
            type="radio"
            name="theme"
            value={o.value}
            checked={theme === o.value}
            onChange={() => onChange(o.value)}
            className="sr-only"
          />
          {o.icon}
          <span className="sr-only">{o.label}</span>
        </label>
      ))}
    </fieldset>
  );
}
