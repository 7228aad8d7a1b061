// WebSocket tickets (contract 1.1): `POST /api/ws-ticket` with the bearer
// token answers a single-use ticket valid for 30 seconds, and the socket opens
// with `?ticket=` instead of `?token=`, so that the long-lived token never
// appears in a URL (proxy logs, browser tooling).

import type { TicketResult } from '../protocol';

type Fetch = (path: string, init: RequestInit) => Promise<Pick<Response, 'status' | 'json'>>;

/** Ask the node for a ticket for `token`; never throws. */
export async function requestTicket(token: string, fetcher: Fetch = (path, init) => fetch(path, init)): Promise<TicketResult> {
  let response;
  try {
    response = await fetcher('/api/ws-ticket', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  } catch {
    return { kind: 'failed' };
  }
  // A node older than contract 1.1 has no such route.
  if (response.status === 404) return { kind: 'unsupported' };
  if (response.status === 401) return { kind: 'refused' };
  if (response.status < 200 || response.status >= 300) return { kind: 'failed' };
  try {
    const body = (await response.json()) as { ticket?: unknown } | null;
    if (typeof body?.ticket === 'string' && body.ticket !== '') return { kind: 'ticket', ticket: body.ticket };
  } catch {
    // An answer we cannot read is a failed attempt.
  }
  return { kind: 'failed' };
}
