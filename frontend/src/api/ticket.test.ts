import { describe, expect, it, vi } from 'vitest';
import { socketUrl } from '../chat';
import { requestTicket } from './ticket';

const answer = (status: number, body: unknown = null) =>
  vi.fn(async (_path: string, _init: RequestInit) => ({
    status,
    json: async () => (typeof body === 'string' ? JSON.parse(body) : body),
  }));

describe('requestTicket', () => {
  it('posts the bearer token and returns the ticket', async () => {
    const fetcher = answer(200, { ticket: 'abc', expires_at: '2030-01-01T00:00:30Z' });
    expect(await requestTicket('tok', fetcher)).toEqual({ kind: 'ticket', ticket: 'abc' });
    expect(fetcher).toHaveBeenCalledExactlyOnceWith('/api/ws-ticket', {
      method: 'POST',
      headers: { Authorization: 'Bearer tok' },
    });
  });

  it('reads a 404 as a node without tickets, so that the token is used', async () => {
    expect(await requestTicket('tok', answer(404, { error: { code: 'not_found', message: 'Not found.' } }))).toEqual({ kind: 'unsupported' });
  });

  it('reads a 401 as a refused token', async () => {
    expect(await requestTicket('tok', answer(401))).toEqual({ kind: 'refused' });
  });

  it('reads anything else as a failure to retry later', async () => {
    for (const status of [429, 500, 502, 503]) expect(await requestTicket('tok', answer(status))).toEqual({ kind: 'failed' });
    expect(await requestTicket('tok', answer(200, { expires_at: 'x' }))).toEqual({ kind: 'failed' });
    expect(await requestTicket('tok', answer(200, '<html>'))).toEqual({ kind: 'failed' });
    const offline = vi.fn(async () => {
      throw new TypeError('Failed to fetch');
    });
    expect(await requestTicket('tok', offline)).toEqual({ kind: 'failed' });
  });
});

describe('socketUrl', () => {
  it('puts the ticket in the query, and only the ticket', () => {
    expect(socketUrl({ ticket: 'a b' }, { protocol: 'https:', host: 'chat.example:8443' })).toBe('wss://chat.example:8443/ws/chat?ticket=a%20b');
    expect(socketUrl({ token: 'x.y.z' }, { protocol: 'http:', host: '127.0.0.1:8080' })).toBe('ws://127.0.0.1:8080/ws/chat?token=x.y.z');
  });
});
