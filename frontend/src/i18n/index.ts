// The UI's languages: a typed dictionary per language (`en.ts`, `vi.ts`), the
// language picked from the browser (`navigator.languages`) unless the user
// chose one (remembered in localStorage), and `<html lang>` kept in step.

import { en, type Dict } from './en';
import { vi } from './vi';

export type { Dict } from './en';
export { en } from './en';

export const LANGUAGES = ['en', 'vi'] as const;
export type Lang = (typeof LANGUAGES)[number];

const DICTIONARIES: Record<Lang, Partial<Dict>> = { en, vi };

/** Where the user's choice is kept. */
export const LANGUAGE_KEY = 'chatstream.language';

export function isLang(value: unknown): value is Lang {
  return typeof value === 'string' && (LANGUAGES as readonly string[]).includes(value);
}

/**
 * The language to show: the stored choice when it is one we have, else the
 * first of the browser's languages we have (`vi-VN` is `vi`, `en-GB` is
 * `en`), else English.
 */
export function pickLanguage(stored: string | null | undefined, preferred: readonly string[]): Lang {
  if (isLang(stored)) return stored;
  for (const tag of preferred) {
    const base = tag.toLowerCase().split(/[-_]/)[0];
    if (isLang(base)) return base;
  }
  return 'en';
}

/**
 * The dictionary of `lang`. Every key of the English one is there: a key a
 * translation lacks (or leaves empty) falls back to English, per key and per
 * error code, so the UI never shows a blank or an undefined.
 */
export function dictionary(lang: Lang): Dict {
  const own = DICTIONARIES[lang] ?? {};
  if (own === en) return en;
  const merged = { ...en } as Record<string, unknown>;
  for (const [key, value] of Object.entries(own)) {
    if (value === '' || value === undefined || value === null) continue;
    merged[key] = value;
  }
  merged.codes = { ...en.codes, ...Object.fromEntries(Object.entries(own.codes ?? {}).filter(([, v]) => v)) };
  return merged as Dict;
}

/** A count written the way the language writes numbers (32,000 in English, 32.000 in Vietnamese). */
export function formatNumber(lang: Lang, value: number, fractionDigits = 0): string {
  return new Intl.NumberFormat(lang, { maximumFractionDigits: fractionDigits, minimumFractionDigits: fractionDigits }).format(value);
}

/** The browser's preferred languages, most preferred first. */
export function browserLanguages(): readonly string[] {
  if (typeof navigator === 'undefined') return [];
  return navigator.languages?.length ? navigator.languages : navigator.language ? [navigator.language] : [];
}

/** The stored choice, if any (storage may be unavailable). */
export function storedLanguage(): string | null {
  try {
    return localStorage.getItem(LANGUAGE_KEY);
  } catch {
    return null;
  }
}

export function storeLanguage(lang: Lang): void {
  try {
    localStorage.setItem(LANGUAGE_KEY, lang);
  } catch {
    // Private mode with storage off: the choice lasts for this page only.
  }
}

/** The language this page starts in. */
export function initialLanguage(): Lang {
  return pickLanguage(storedLanguage(), browserLanguages());
}
