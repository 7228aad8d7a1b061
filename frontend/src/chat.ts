// The one protocol client of the page, wired to the browser.

import { dropToken, getToken } from './api/auth';
import { ChatClient } from './protocol';

export function createChatClient(): ChatClient {
  const client = new ChatClient({
    url: (token) => {
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      return `${scheme}//${location.host}/ws/chat?token=${encodeURIComponent(token)}`;
    },
    getToken,
    dropToken,
    createSocket: (url) => new WebSocket(url),
    isOnline: () => navigator.onLine,
  });
  window.addEventListener('online', () => client.retryNow());
  window.addEventListener('offline', () => client.wentOffline());
  return client;
}
