import { useCallback, useEffect, useState } from 'react';
import { parseRoute, routeHash } from '../lib/route';

// The open conversation lives in the URL hash (#/c/<id>), so a reload or a
// second tab opened on the same address shows the same conversation, and
// the browser's back button moves between conversations. A search result
// opens it at a message: #/c/<id>/m/<message>.

/** The message to bring into view; `visit` changes on every navigation, so opening the same result again scrolls again. */
export interface MessageTarget {
  message: string;
  visit: number;
}

export type Navigate = (id: string | null, replace?: boolean, message?: string | null) => void;

let visits = 0;

const read = () => ({ ...parseRoute(location.hash), visit: ++visits });

export function useRoute(): [string | null, Navigate, MessageTarget | null] {
  const [route, setRoute] = useState(read);

  useEffect(() => {
    const onChange = () => setRoute(read());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);

  const navigate = useCallback<Navigate>((next, replace = false, message = null) => {
    const url = next ? routeHash(next, message) : location.pathname + location.search;
    if (replace) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
    setRoute({ conversation: next, message: next ? message : null, visit: ++visits });
  }, []);

  const target = route.message ? { message: route.message, visit: route.visit } : null;
  return [route.conversation, navigate, target];
}
