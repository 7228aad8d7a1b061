// The node's JSON routes. Every call carries the guest token; on 401 it
// retries once, after `dropToken` had the token renewed (or, if the server
// refuses to renew it, replaced by a new guest identity, which the UI reports).

import { dropToken, getToken } from './auth';

export interface ConversationSummary {
  id: string;
  title: string | null;
  created_at: string;
  updated_at: string;
}

export interface Model {
  id: string;
  provider: string;
}

export interface ModelList {
  models: Model[];
  default?: string;
}

export class ApiError extends Error {
  constructor(
    readonly code: string,
    /** The server's sentence for people; empty when it sent none. */
    message: string,
  ) {
    super(message);
  }
}

/** The contract's code for an HTTP status, for an answer without a JSON error body (a proxy's own page). */
function codeForStatus(status: number): string {
  const codes: Record<number, string> = {
    400: 'bad_request',
    401: 'unauthorized',
    403: 'forbidden',
    404: 'not_found',
    409: 'conflict',
    413: 'too_large',
    429: 'rate_limited',
    502: 'unavailable',
    503: 'unavailable',
    504: 'unavailable',
  };
  return codes[status] ?? (status >= 500 ? 'internal' : 'bad_request');
}

/** The error an HTTP answer stands for: `{"error": {"code", "message"}}`, or whatever else came. */
export function errorOf(status: number, body: unknown): ApiError {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof error?.code === 'string' && error.code !== '' ? error.code : codeForStatus(status);
  return new ApiError(code, typeof error?.message === 'string' ? error.message : '');
}

async function call<T>(method: string, path: string, retry = true, signal?: AbortSignal, body?: unknown): Promise<T> {
  const token = await getToken();
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    signal,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && retry) {
    dropToken(token);
    return call<T>(method, path, false, signal, body);
  }
  if (!response.ok) {
    throw errorOf(response.status, await response.json().catch(() => null));
  }
  return (response.status === 204 ? undefined : await response.json()) as T;
}

/** One page of the list; the server's default page is 50, newest first. */
export interface ConversationPage {
  conversations: ConversationSummary[];
  /** The cursor of the next page (`before`), null on the last page. */
  next: string | null;
}

export async function listConversations(options: { limit?: number; before?: string | null } = {}): Promise<ConversationPage> {
  const query = new URLSearchParams();
  if (options.limit !== undefined) query.set('limit', String(options.limit));
  if (options.before) query.set('before', options.before);
  const search = query.toString();
  const path = `/api/conversations${search ? `?${search}` : ''}`;
  const page = await call<Partial<ConversationPage> & { conversations: ConversationSummary[] }>('GET', path);
  return { conversations: page.conversations, next: page.next ?? null };
}

/** A message as `GET /api/conversations/{id}` gives it (contract 1.2 adds `parent_id`). */
export interface StoredMessage {
  id: string;
  conversation_id: string;
  role: 'user' | 'assistant';
  content: string;
  status: 'streaming' | 'complete' | 'cancelled' | 'failed';
  model?: string | null;
  created_at: string;
  error?: string | null;
  parent_id?: string | null;
}

/**
 * `GET /api/conversations/{id}`: `messages` is the active path, root first;
 * `branches` (contract 1.2) every other version, absent from older nodes.
 */
export interface ConversationDetail {
  id: string;
  title: string | null;
  epoch: string;
  seq: number;
  messages: StoredMessage[];
  branches?: StoredMessage[];
  created_at?: string;
  updated_at?: string;
}

export function getConversation(id: string): Promise<ConversationDetail> {
  return call<ConversationDetail>('GET', `/api/conversations/${encodeURIComponent(id)}`);
}

/** The longest title the server takes, in Unicode scalar values (longer answers 413 `too_large`). */
export const MAX_TITLE_CHARS = 200;

/** `PATCH /api/conversations/{id}` `{title}`: answers the conversation as GET does. */
export function renameConversation(id: string, title: string): Promise<ConversationDetail> {
  return call<ConversationDetail>('PATCH', `/api/conversations/${encodeURIComponent(id)}`, true, undefined, { title });
}

export function deleteConversation(id: string): Promise<void> {
  return call<void>('DELETE', `/api/conversations/${encodeURIComponent(id)}`);
}

export function listModels(): Promise<ModelList> {
  return call<ModelList>('GET', '/api/models');
}

/** A message that matches a search; `snippet` marks each matched word as `[[word]]`. */
export interface SearchResult {
  conversation_id: string;
  conversation_title: string | null;
  message_id: string;
  role: 'user' | 'assistant' | string;
  snippet: string;
  created_at: string;
}

/** The longest query the server takes (longer answers 413 `too_large`). */
export const MAX_QUERY_CHARS = 500;

/** `GET /api/search`. A node without a durable store answers `ApiError('unavailable')`. */
export async function searchMessages(q: string, limit = 20, signal?: AbortSignal): Promise<SearchResult[]> {
  const query = new URLSearchParams({ q, limit: String(limit) });
  return (await call<{ results: SearchResult[] }>('GET', `/api/search?${query}`, true, signal)).results;
}
