import { useCallback, useEffect, useLayoutEffect, useRef, useState, type RefObject } from 'react';

/** Closer to the bottom than this (px) counts as "at the bottom". */
const SLACK = 48;

/**
 * Keeps a scroll container pinned to its bottom while content grows, unless
 * the user scrolled up to read; scrolling back down re-pins it. `content`
 * changes whenever what is shown grows; `reset` changes when another
 * conversation is shown, which always starts at the bottom.
 */
export function useAutoFollow(ref: RefObject<HTMLElement | null>, content: unknown, reset: unknown) {
  const pinned = useRef(true);
  /** Where our own last scroll to the bottom left the view. */
  const autoTop = useRef(0);
  const [atBottom, setAtBottom] = useState(true);

  const toBottom = useCallback(() => {
    const el = ref.current;
    if (!el) return;
    el.scrollTop = el.scrollHeight;
    autoTop.current = el.scrollTop;
  }, [ref]);

  useLayoutEffect(() => {
    pinned.current = true;
    setAtBottom(true);
    toBottom();
  }, [reset, toBottom]);

  useLayoutEffect(() => {
    // Scroll events arrive a frame late: a reader who just scrolled up while
    // a token arrived is seen here first, by the view being above where we left it.
    const el = ref.current;
    if (el && el.scrollTop < autoTop.current - 1) pinned.current = false;
    if (pinned.current) toBottom();
  }, [content, ref, toBottom]);

  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const onScroll = () => {
      const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < SLACK;
      pinned.current = bottom;
      setAtBottom(bottom);
    };
    // The composer growing or the window resizing shrinks the view: stay pinned.
    const resize = new ResizeObserver(() => pinned.current && toBottom());
    el.addEventListener('scroll', onScroll, { passive: true });
    resize.observe(el);
    return () => {
      el.removeEventListener('scroll', onScroll);
      resize.disconnect();
    };
  }, [ref, toBottom]);

  const jump = useCallback(() => {
    pinned.current = true;
    setAtBottom(true);
    toBottom();
  }, [toBottom]);

  /** The view was scrolled by the page itself (to a search result): follow only if that left it at the bottom. */
  const settle = useCallback(() => {
    const el = ref.current;
    if (!el) return;
    const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < SLACK;
    pinned.current = bottom;
    autoTop.current = el.scrollTop;
    setAtBottom(bottom);
  }, [ref]);

  return { atBottom, jump, settle };
}
