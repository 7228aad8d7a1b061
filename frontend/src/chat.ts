// The one protocol client of the page, wired to the browser.

import { dropToken, getToken } from './api/auth';
import { requestTicket } from './api/ticket';
import { announceListChange } from './lib/tabs';
import { ChatClient, type SocketCredential } from './protocol';

/** The socket's address on this page's origin: a ticket when the node gave one, else the token. */
export function socketUrl(credential: SocketCredential, where: Pick<Location, 'protocol' | 'host'> = location): string {
  const scheme = where.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = 'ticket' in credential ? `ticket=${encodeURIComponent(credential.ticket)}` : `token=${encodeURIComponent(credential.token)}`;
  return `${scheme}//${where.host}/ws/chat?${query}`;
}

export function createChatClient(): ChatClient {
  const client = new ChatClient({
    url: (credential) => socketUrl(credential),
    getToken,
    getTicket: (token) => requestTicket(token),
    dropToken,
    createSocket: (url) => new WebSocket(url),
    isOnline: () => navigator.onLine,
  });
  // A conversation this tab created is news for the other tabs' lists.
  let created = 0;
  client.onChange(() => {
    const now = Object.keys(client.getState().created).length;
    if (now > created) announceListChange();
    created = now;
  });
  window.addEventListener('online', () => client.retryNow());
  window.addEventListener('offline', () => client.wentOffline());
  return client;
}
