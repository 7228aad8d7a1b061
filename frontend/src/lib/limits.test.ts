import { describe, expect, it } from 'vitest';
import { charCount, checkDraft, frameBytes, MAX_CONTENT_CHARS, MAX_FRAME_BYTES, sendFrameBytes, utf8Length } from './limits';

describe('charCount', () => {
  it('counts Unicode scalar values: a surrogate pair is one character', () => {
    expect(charCount('')).toBe(0);
    expect(charCount('abc')).toBe(3);
    expect(charCount('Tiếng Việt')).toBe(10);
    expect(charCount('流式')).toBe(2);
    expect(charCount('😀👍')).toBe(2);
    // A lone surrogate still counts once.
    expect(charCount('a\ud800b')).toBe(3);
  });
});

describe('utf8Length', () => {
  it('matches the browser encoder, letter by letter', () => {
    for (const text of ['', 'abc', 'é', 'Tiếng Việt có dấu', '流式传输', '😀 and 👍', 'a\ud800b', '\udc00', 'x\ud83d']) {
      expect(utf8Length(text), JSON.stringify(text)).toBe(new TextEncoder().encode(text).length);
    }
  });

  it('is 3 bytes a Chinese character, 2 or 3 a Vietnamese letter with marks', () => {
    expect(utf8Length('中')).toBe(3);
    expect(utf8Length('ệ')).toBe(3);
    expect(utf8Length('ó')).toBe(2);
    expect(utf8Length('đ')).toBe(2);
  });
});

describe('sendFrameBytes', () => {
  it('is the size of the frame ChatClient.send builds, JSON escapes included', () => {
    const content = 'line one\nwith "quotes" and \\ and 流';
    const frame = {
      type: 'send',
      id: crypto.randomUUID(),
      content,
      client_msg_id: crypto.randomUUID(),
      conversation_id: crypto.randomUUID(),
      model: 'demo',
    };
    expect(sendFrameBytes(content, frame.conversation_id, 'demo')).toBe(frameBytes(frame));
    expect(sendFrameBytes(content, null)).toBe(
      frameBytes({ type: 'send', id: frame.id, content, client_msg_id: frame.client_msg_id }),
    );
  });
});

describe('checkDraft', () => {
  const context = { conversationId: null };

  it('25,000 Chinese characters: under the character limit, over the byte limit', () => {
    const check = checkDraft('流'.repeat(25_000), context);
    expect(check.chars).toBe(25_000);
    expect(check.bytes).toBeGreaterThan(75_000);
    expect(check).toMatchObject({ tooManyChars: false, tooManyBytes: true, near: true, measure: 'bytes' });
  });

  it('40,000 ASCII characters: over the character limit, under the byte limit', () => {
    const check = checkDraft('a'.repeat(40_000), context);
    expect(check).toMatchObject({ chars: 40_000, tooManyChars: true, tooManyBytes: false, near: true, measure: 'chars' });
  });

  it('exactly at the limits is allowed; one more is not', () => {
    expect(checkDraft('a'.repeat(MAX_CONTENT_CHARS), context).tooManyChars).toBe(false);
    expect(checkDraft('a'.repeat(MAX_CONTENT_CHARS + 1), context).tooManyChars).toBe(true);
    // Fill a frame to exactly the byte limit with two-byte letters and ASCII.
    const overhead = sendFrameBytes('', null);
    const room = MAX_FRAME_BYTES - overhead;
    const exact = 'đ'.repeat(Math.floor(room / 2)) + 'a'.repeat(room % 2);
    expect(sendFrameBytes(exact, null)).toBe(MAX_FRAME_BYTES);
    expect(checkDraft(exact, context)).toMatchObject({ tooManyBytes: false, tooManyChars: true });
  });

  it('a short draft is far from both limits: no counter', () => {
    expect(checkDraft('Xin chào', context)).toMatchObject({ near: false, tooManyChars: false, tooManyBytes: false });
  });

  it('the counter shows from 80% of either limit', () => {
    expect(checkDraft('a'.repeat(25_599), context).near).toBe(false);
    expect(checkDraft('a'.repeat(25_600), context).near).toBe(true);
    expect(checkDraft('流'.repeat(17_500), context).near).toBe(true); // 52.5 KB of 64
  });
});
