import { describe, expect, it } from 'vitest';
import { errorOf } from '../api/http';
import { dictionary } from '../i18n';
import {
  describeError,
  ERROR_CODES,
  FAILED_REPLY_TEXT,
  failedReplyDetail,
  humanSentence,
  sentenceForCode,
  serverSentence,
} from './failures';

describe('humanSentence', () => {
  it('keeps a sentence, capitalized and ended', () => {
    expect(humanSentence('The model did not answer in time.')).toBe('The model did not answer in time.');
    expect(humanSentence('  the model   is busy ')).toBe('The model is busy.');
  });

  it('refuses codes, JSON, markup, addresses, empty and overlong text', () => {
    const refused = [
      undefined,
      null,
      '',
      '   ',
      'too_large',
      'Forbidden',
      '{"error":"x"}',
      '[1, 2]',
      '<html><h1>429 Too Many Requests</h1></html>',
      'Upstream http://10.0.0.7:8000/v1 answered 400 Bad Request: nope.',
      'word '.repeat(80),
    ];
    for (const text of refused) {
      expect(humanSentence(text)).toBeNull();
    }
  });
});

describe('describeError', () => {
  it("uses the server's sentence, else the code's", () => {
    expect(describeError('too_large', 'Titles are at most 200 characters.')).toBe('Titles are at most 200 characters.');
    expect(describeError('too_large', 'too_large')).toMatch(/more than the server accepts/);
    expect(describeError('rate_limited', '')).toBe('You are going too fast. Wait a moment and try again.');
    expect(describeError('what_is_this', '')).toBe('Something went wrong.');
  });
});

describe('a failed reply', () => {
  it("adds the server's reason to the notice, unless it only repeats it", () => {
    expect(failedReplyDetail('The model is unavailable. Try again later.')).toBe('The model is unavailable. Try again later.');
    expect(failedReplyDetail(undefined)).toBeNull();
    expect(failedReplyDetail('upstream_error')).toBeNull();
    expect(failedReplyDetail(FAILED_REPLY_TEXT)).toBeNull();
  });
});

describe('HTTP error bodies', () => {
  it("reads the contract's body", () => {
    const error = errorOf(413, { error: { code: 'too_large', message: 'That message is too long.' } });
    expect([error.code, error.message]).toEqual(['too_large', 'That message is too long.']);
  });

  it("names the code from the status when the body is not the contract's (a proxy's page)", () => {
    expect([errorOf(429, null).code, errorOf(429, null).message]).toEqual(['rate_limited', '']);
    expect(errorOf(502, null).code).toBe('unavailable');
    expect(errorOf(500, { error: 'boom' }).code).toBe('internal');
    expect(errorOf(404, { error: { code: 'not_found' } }).message).toBe('');
  });
});

describe('every error code as a sentence', () => {
  for (const lang of ['en', 'vi'] as const) {
    const t = dictionary(lang);
    it(`has a sentence for each code in ${lang}, never the code itself`, () => {
      const sentences = new Set<string>();
      for (const code of ERROR_CODES) {
        for (const message of [code, '', undefined, null, `{"code":"${code}"}`, `<html>${code}</html>`]) {
          const text = describeError(code, message, t);
          expect(text, `${code} / ${String(message)}`).toBe(sentenceForCode(code, t));
          expect(text).toMatch(/^\p{Lu}.{10,}[.!…]$/u);
          expect(text).not.toMatch(/_|[{}<>]/);
        }
        sentences.add(sentenceForCode(code, t));
      }
      // One sentence per code, none falling back to the general one.
      expect(sentences.size).toBe(ERROR_CODES.length);
      expect(sentences.has(t.somethingWentWrong)).toBe(false);
    });
  }

  it("prefers the server's own sentence in English, never in another language", () => {
    const server = 'This conversation has reached its limit of 2,000 messages.';
    expect(describeError('too_large', server, dictionary('en'))).toBe(server);
    for (const code of ERROR_CODES) {
      const shown = describeError(code, server, dictionary('vi'));
      expect(shown).toBe(dictionary('vi').codes[code]);
      expect(serverSentence(server, dictionary('vi'))).toBeNull();
    }
  });

  it("shows a failed reply's English reason only in an English UI", () => {
    const vi = dictionary('vi');
    expect(failedReplyDetail('The model service is not answering.', vi.failedReply)).toBeNull();
    expect(failedReplyDetail('The model service is not answering.', dictionary('en').failedReply)).toBe(
      'The model service is not answering.',
    );
  });

  it('says something general for a code it does not know, in the language', () => {
    expect(sentenceForCode('teapot', dictionary('vi'))).toBe('Đã có lỗi xảy ra.');
    expect(sentenceForCode('toString')).toBe('Something went wrong.');
  });
});
