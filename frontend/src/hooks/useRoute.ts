import { useCallback, useEffect, useState } from 'react';

// The open conversation lives in the URL hash (#/c/<id>), so a reload or a
// second tab opened on the same address shows the same conversation, and
// the browser's back button moves between conversations.
const PREFIX = '#/c/';

const read = (): string | null =>
  location.hash.startsWith(PREFIX) ? decodeURIComponent(location.hash.slice(PREFIX.length)) || null : null;

export function useRoute(): [string | null, (id: string | null, replace?: boolean) => void] {
  const [id, setId] = useState(read);

  useEffect(() => {
    const onChange = () => setId(read());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);

  const navigate = useCallback((next: string | null, replace = false) => {
    const url = next ? `${PREFIX}${encodeURIComponent(next)}` : location.pathname + location.search;
    if (replace) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
    setId(next);
  }, []);

  return [id, navigate];
}
