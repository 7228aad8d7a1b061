import { describe, expect, it } from 'vitest';
import { banners, describeNotice, IDENTITY_REPLACED, RETRYING_TEXT } from './Notices';

const notice = (id: string, code: string, message = '') => ({ id, code, message });

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

  it("shows the server's sentence for people", () => {
    expect(describeNotice(notice('1', 'too_large', 'This conversation has reached its limit of 2,000 messages.'))).toBe(
      'This conversation has reached its limit of 2,000 messages.',
    );
    expect(describeNotice(notice('1', 'rate_limited', 'too many frames, slow down'))).toBe('Too many frames, slow down.');
  });

  it('says a conversation that is gone no longer exists when the server gives no sentence', () => {
    expect(describeNotice(notice('1', 'not_found', ''))).toBe('This conversation no longer exists.');
  });

  it('says an unavailable server is temporary, without blaming the session', () => {
    expect(describeNotice(notice('1', 'unavailable', 'unavailable'))).toMatch(/temporarily unavailable/);
    expect(RETRYING_TEXT).toMatch(/temporarily unavailable.*Retrying/);
  });

  it('never shows a bare code or raw JSON: the sentence for the code instead', () => {
    const codes = ['bad_request', 'forbidden', 'not_found', 'too_large', 'rate_limited', 'conflict', 'unavailable', 'internal', 'something_new'];
    for (const code of codes) {
      for (const message of ['', code, '{"error": {"code": "x"}}', '<html><body>502 Bad Gateway</body></html>']) {
        const text = describeNotice(notice('1', code, message))!;
        expect(text).toBeTruthy();
        expect(text).not.toContain('_');
        expect(text).not.toMatch(/[{<]/);
      }
    }
  });

  it('says which action failed for notices of the page, with the reason when the server gave one', () => {
    expect(describeNotice(notice('1', 'delete_failed', ''))).toBe('That conversation could not be deleted. Try again in a moment.');
    expect(describeNotice(notice('1', 'delete_failed', 'The server is stopping.'))).toBe('That conversation could not be deleted. The server is stopping.');
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
