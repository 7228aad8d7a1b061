import { describe, expect, it } from 'vitest';
import { keepFollowing, SLACK } from './follow';

/** A list 600 px high over `height` px of content, scrolled to `top`. */
const at = (top: number, height: number) => ({ top, height, client: 600 });

describe('keepFollowing', () => {
  it('keeps following when content grows under a pinned view', () => {
    // At the bottom (1400 of 2000), then a token made it 2100 high before the scroll.
    expect(keepFollowing(true, 1400, at(1400, 2100))).toBe(true);
  });

  it('keeps following when the content shrinks and the browser pulls the view back to the new bottom', () => {
    // The "Sending…" bubble replaced by the shorter real message: 2000 → 1980 high, top clamped 1400 → 1380.
    expect(keepFollowing(true, 1400, at(1380, 1980))).toBe(true);
    // A large shrink too (a duplicate bubble removed).
    expect(keepFollowing(true, 1400, at(1200, 1800))).toBe(true);
  });

  it('stops when the reader scrolled up, however little', () => {
    expect(keepFollowing(true, 1400, at(1000, 2000))).toBe(false);
    expect(keepFollowing(true, 1400, at(1390, 2000))).toBe(false);
    // Scrolled up while a token arrived: the content is taller and the view higher.
    expect(keepFollowing(true, 1400, at(1300, 2100))).toBe(false);
  });

  it('follows again when the reader comes back near the bottom', () => {
    expect(keepFollowing(false, 1000, at(1400 - SLACK + 1, 2000))).toBe(true);
    expect(keepFollowing(false, 1000, at(1400, 2000))).toBe(true);
  });

  it('a reader still away (moving down, or content growing) stays away', () => {
    expect(keepFollowing(false, 1000, at(1100, 2000))).toBe(false);
    expect(keepFollowing(false, 1000, at(1000, 2100))).toBe(false);
  });

  it('a view that got shorter (the composer grew) is not the reader moving', () => {
    expect(keepFollowing(true, 1400, { top: 1400, height: 2000, client: 500 })).toBe(true);
  });

  it('content that fits the view is always followed', () => {
    expect(keepFollowing(false, 0, at(0, 300))).toBe(true);
  });
});
