// The one protocol client of the page, wired to the browser.

import { dropToken, getToken } from './api/auth';
import { requestTicket } from './api/ticket';
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
  window.addEventListener('online', () => client.retryNow());
  window.addEventListener('offline', () => client.wentOffline());
  return client;
}
