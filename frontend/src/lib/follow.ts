// When the message list follows a reply to its bottom. The view follows
// ("pinned") until the reader moves it up; content shrinking under the view
// (the "Sending…" bubble replaced by the shorter real message, which makes the
// browser pull the scroll position back) is not the reader moving it.

/** Closer to the bottom than this (px) counts as "at the bottom". */
export const SLACK = 48;

export interface ScrollSample {
  /** `scrollTop` */
  top: number;
  /** `scrollHeight` */
  height: number;
  /** `clientHeight` */
  client: number;
}

export function distanceFromBottom(s: ScrollSample): number {
  return s.height - s.top - s.client;
}

export function isAtBottom(s: ScrollSample, slack = SLACK): boolean {
  return distanceFromBottom(s) < slack;
}

/**
 * Whether to keep following after the view was seen at `now`, when it was
 * last seen (or put) at `lastTop`:
 * - right at the bottom: follow (nothing below to miss; this is also where
 *   the browser puts the view when content shrinks under it);
 * - moved up since: the reader scrolled up, stop;
 * - near the bottom otherwise: the reader came back down, follow;
 * - further up without moving up: content grew under the view (or the view
 *   got shorter) and nobody changed their mind: as before.
 */
export function keepFollowing(pinned: boolean, lastTop: number, now: ScrollSample, slack = SLACK): boolean {
  const distance = distanceFromBottom(now);
  if (distance <= 1) return true;
  if (now.top < lastTop - 1) return false;
  if (distance < slack) return true;
  return pinned;
}

/** Keys that scroll a focused list up: pressing one means "let me read". */
export const UP_KEYS: readonly string[] = ['ArrowUp', 'PageUp', 'Home'];
