import { describe, expect, it } from 'vitest';
import { banners, describeNotice, IDENTITY_REPLACED, RETRYING_TEXT } from './Notices';

const notice = (id: string, code: string, message = 'server text: InvalidSignature') => ({ id, code, message });

describe('what notices say', () => {
  it('says nothing about a refused token: it is renewed without a word', () => {
    expect(describeNotice(notice('1', 'unauthorized', 'invalid token: InvalidSignature'))).toBeNull();
  });

  it('says plainly when the browser had to start a new guest identity', () => {
    const text = describeNotice(notice('1', 'unauthorized', IDENTITY_REPLACED))!;
    expect(text).toMatch(/new guest identity/);
    expect(text).toMatch(/earlier conversations belonged to the previous guest identity/);
    expect(text).toMatch(/can no longer be opened from this browser/);
    expect(text).not.toMatch(/expired|session|token|unauthorized/i);
  });

  it('says a conversation that is gone no longer exists', () => {
    expect(describeNotice(notice('1', 'not_found'))).toBe('This conversation no longer exists.');
  });

  it('says an unavailable server is temporary, without blaming the session', () => {
    expect(describeNotice(notice('1', 'unavailable'))).toMatch(/temporarily unavailable/);
    expect(RETRYING_TEXT).toMatch(/temporarily unavailable.*Retrying/);
  });

  it('never shows codes, server or library text', () => {
    for (const code of ['bad_request', 'forbidden', 'not_found', 'too_large', 'rate_limited', 'conflict', 'unavailable', 'internal', 'network', 'delete_failed', 'something_new']) {
      const text = describeNotice(notice('1', code))!;
      expect(text).toBeTruthy();
      expect(text).not.toContain('_');
      expect(text).not.toContain('InvalidSignature');
      expect(text).not.toContain('server text');
    }
  });
});

describe('banners', () => {
  it('shows notices that say the same thing once, as the latest, dismissed together', () => {
    const shown = banners([notice('a', 'unavailable'), notice('b', 'conflict'), notice('c', 'unavailable')]);
    expect(shown.map((b) => b.code)).toEqual(['conflict', 'unavailable']);
    expect(shown[1]!.ids).toEqual(['a', 'c']);
  });

  it('leaves out hidden notices and keeps the latest three', () => {
    const shown = banners([
      notice('1', 'bad_request'),
      notice('2', 'unauthorized'),
      notice('3', 'conflict'),
      notice('4', 'too_large'),
      notice('5', 'not_found'),
    ]);
    expect(shown.map((b) => b.ids[0])).toEqual(['3', '4', '5']);
  });
});
