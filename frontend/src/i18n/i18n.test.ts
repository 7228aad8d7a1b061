import { describe, expect, it } from 'vitest';
import { en } from './en';
import { dictionary, formatNumber, pickLanguage } from './index';
import { vi } from './vi';

describe('pickLanguage', () => {
  it('takes the stored choice first', () => {
    expect(pickLanguage('en', ['vi-VN'])).toBe('en');
    expect(pickLanguage('vi', ['en-US'])).toBe('vi');
  });

  it('ignores a stored value that is not a language of the UI', () => {
    expect(pickLanguage('fr', ['vi-VN'])).toBe('vi');
    expect(pickLanguage('', ['vi'])).toBe('vi');
  });

  it("takes the first of the browser's languages the UI has, by its base language", () => {
    expect(pickLanguage(null, ['vi-VN', 'en-US'])).toBe('vi');
    expect(pickLanguage(null, ['fr-FR', 'VI', 'en'])).toBe('vi');
    expect(pickLanguage(null, ['de', 'en-GB', 'vi'])).toBe('en');
    expect(pickLanguage(null, ['vi_VN'])).toBe('vi');
  });

  it('falls back to English', () => {
    expect(pickLanguage(null, [])).toBe('en');
    expect(pickLanguage(undefined, ['ja-JP', 'zh-CN'])).toBe('en');
  });
});

describe('dictionary', () => {
  it('has every English key in Vietnamese, translated', () => {
    const t = dictionary('vi');
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      expect(t[key], key).toBeDefined();
      if (typeof en[key] === 'string' && key !== 'appTitle') expect(t[key], key).not.toBe(en[key]);
    }
    expect(t.placeholder).toBe('Nhắn tin cho chatstream');
    expect(Object.keys(t.codes).sort()).toEqual(Object.keys(en.codes).sort());
  });

  it('falls back to English for a key a translation lacks or leaves empty', () => {
    const original = { ...vi };
    const mutable = vi as unknown as Record<string, unknown>;
    try {
      mutable.jumpToLatest = '';
      delete mutable.newChat;
      mutable.codes = { ...vi.codes, conflict: '' };
      const t = dictionary('vi');
      expect(t.jumpToLatest).toBe(en.jumpToLatest);
      expect(t.newChat).toBe(en.newChat);
      expect(t.codes.conflict).toBe(en.codes.conflict);
      expect(t.codes.not_found).toBe(original.codes.not_found);
    } finally {
      Object.assign(vi, original);
    }
  });

  it('writes Vietnamese with its diacritics', () => {
    const t = dictionary('vi');
    expect(t.waitForReply).toBe('Hãy đợi câu trả lời viết xong, hoặc bấm Dừng.');
    expect(t.tooManyChars('32.000', '8.000')).toContain('32.000 ký tự');
  });
});

describe('formatNumber', () => {
  it('groups digits the way each language does', () => {
    expect(formatNumber('en', 32_000)).toBe('32,000');
    expect(formatNumber('vi', 32_000)).toBe('32.000');
    expect(formatNumber('en', 73.25, 1)).toBe('73.3');
    expect(formatNumber('vi', 73.25, 1)).toBe('73,3');
  });
});
