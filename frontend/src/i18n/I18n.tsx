import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { dictionary, en, formatNumber, initialLanguage, storeLanguage, type Dict, type Lang } from './index';

export interface I18n {
  lang: Lang;
  t: Dict;
  setLang: (lang: Lang) => void;
  /** A number in the language's way of writing it. */
  n: (value: number, fractionDigits?: number) => string;
}

const fallback: I18n = { lang: 'en', t: en, setLang: () => {}, n: (v, d) => formatNumber('en', v, d) };

const I18nContext = createContext<I18n>(fallback);

/** Gives the UI its language; a choice is remembered and sets `<html lang>`. */
export function I18nProvider({ children, initial }: { children: ReactNode; initial?: Lang }) {
  const [lang, setLangState] = useState<Lang>(() => initial ?? initialLanguage());
  useEffect(() => {
    document.documentElement.lang = lang;
  }, [lang]);
  const setLang = useCallback((next: Lang) => {
    storeLanguage(next);
    setLangState(next);
  }, []);
  const value = useMemo<I18n>(
    () => ({ lang, t: dictionary(lang), setLang, n: (v, d) => formatNumber(lang, v, d) }),
    [lang, setLang],
  );
  return <I18nContext.Provider value={value}>{children}</I18nContext.Provider>;
}

export function useI18n(): I18n {
  return useContext(I18nContext);
}
