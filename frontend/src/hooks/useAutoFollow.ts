import { useCallback, useEffect, useLayoutEffect, useRef, useState, type RefObject } from 'react';
import { isAtBottom, keepFollowing, UP_KEYS, type ScrollSample } from '../lib/follow';

const sample = (el: HTMLElement): ScrollSample => ({ top: el.scrollTop, height: el.scrollHeight, client: el.clientHeight });

const reducedMotion = () =>
  typeof window !== 'undefined' && typeof window.matchMedia === 'function' && window.matchMedia('(prefers-reduced-motion: reduce)').matches;

/**
 * Keeps a scroll container pinned to its bottom while content grows, unless
 * the reader scrolled up (wheel, touch, keys, scrollbar); coming back to the
 * bottom, or `jump`, pins it again. Content that shrinks under the view (the
 * browser then pulls the position back) does not unpin it: the decision is
 * `keepFollowing` (lib/follow.ts). `content` changes whenever what is shown
 * grows; `reset` changes when another conversation is shown, which always
 * starts at the bottom. `following` is false while the reader is away, for
 * the "Jump to latest" control.
 */
export function useAutoFollow(ref: RefObject<HTMLElement | null>, content: unknown, reset: unknown) {
  const pinned = useRef(true);
  /** Where the view was last seen or put: a lower `scrollTop` since is the reader moving up. */
  const lastTop = useRef(0);
  const [following, setFollowing] = useState(true);

  const setPinned = useCallback((value: boolean) => {
    pinned.current = value;
    setFollowing(value);
  }, []);

  const toBottom = useCallback(() => {
    const el = ref.current;
    if (!el) return;
    el.scrollTop = el.scrollHeight;
    lastTop.current = el.scrollTop;
  }, [ref]);

  /** Look at the view: still following? If so, to the bottom. */
  const observe = useCallback(() => {
    const el = ref.current;
    if (!el) return;
    const now = sample(el);
    const keep = keepFollowing(pinned.current, lastTop.current, now);
    if (keep !== pinned.current) setPinned(keep);
    lastTop.current = now.top;
    if (keep) toBottom();
  }, [ref, setPinned, toBottom]);

  // Another conversation shown: following again, from this render on (state
  // adjusted while rendering, not in an effect) ...
  const [shownReset, setShownReset] = useState(reset);
  if (shownReset !== reset) {
    setShownReset(reset);
    setFollowing(true);
  }
  // ... and at its bottom before the browser paints it.
  useLayoutEffect(() => {
    pinned.current = true;
    toBottom();
  }, [reset, toBottom]);

  // After every change of what is shown, before the browser paints it. Scroll
  // events arrive a frame late: a reader who just scrolled up while a token
  // arrived is seen here first, by the view being above where it was.
  useLayoutEffect(observe, [content, observe]);

  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const canScrollUp = () => el.scrollTop > 0;
    const readerMovesUp = () => {
      if (canScrollUp() && pinned.current) setPinned(false);
    };
    const onScroll = () => observe();
    const onWheel = (e: WheelEvent) => e.deltaY < 0 && readerMovesUp();
    let touchY: number | null = null;
    const onTouchStart = (e: TouchEvent) => {
      touchY = e.touches[0]?.clientY ?? null;
    };
    const onTouchMove = (e: TouchEvent) => {
      const y = e.touches[0]?.clientY;
      // A finger moving down drags the content down: towards older messages.
      if (touchY !== null && y !== undefined && y > touchY + 4) readerMovesUp();
    };
    const onKey = (e: KeyboardEvent) => UP_KEYS.includes(e.key) && readerMovesUp();
    // Growth the content key does not see (highlighted code, fonts, images)
    // and the view changing size (the composer growing, the window resizing).
    const resize = new ResizeObserver(() => pinned.current && toBottom());
    el.addEventListener('scroll', onScroll, { passive: true });
    el.addEventListener('wheel', onWheel, { passive: true });
    el.addEventListener('touchstart', onTouchStart, { passive: true });
    el.addEventListener('touchmove', onTouchMove, { passive: true });
    el.addEventListener('keydown', onKey);
    resize.observe(el);
    if (el.firstElementChild) resize.observe(el.firstElementChild);
    return () => {
      el.removeEventListener('scroll', onScroll);
      el.removeEventListener('wheel', onWheel);
      el.removeEventListener('touchstart', onTouchStart);
      el.removeEventListener('touchmove', onTouchMove);
      el.removeEventListener('keydown', onKey);
      resize.disconnect();
    };
  }, [ref, observe, setPinned, toBottom]);

  /** Back to the latest message, and follow it again (smoothly, unless the reader prefers less motion). */
  const jump = useCallback(() => {
    const el = ref.current;
    setPinned(true);
    if (!el) return;
    lastTop.current = el.scrollTop;
    if (reducedMotion() || typeof el.scrollTo !== 'function') toBottom();
    else el.scrollTo({ top: el.scrollHeight, behavior: 'smooth' });
  }, [ref, setPinned, toBottom]);

  /** The view was scrolled by the page itself (to a search result): follow only if that left it at the bottom. */
  const settle = useCallback(() => {
    const el = ref.current;
    if (!el) return;
    const now = sample(el);
    setPinned(isAtBottom(now));
    lastTop.current = now.top;
  }, [ref, setPinned]);

  return { following, jump, settle };
}
