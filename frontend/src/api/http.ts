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
    message: string,
  ) {
    super(message);
  }
}

async function call<T>(method: string, path: string, retry = true, signal?: AbortSignal): Promise<T> {
  const token = await getToken();
  const response = await fetch(path, { method, headers: { Authorization: `Bearer ${token}` }, signal });
  if (response.status === 401 && retry) {
    dropToken(token);
    return call<T>(method, path, false, signal);
  }
  if (!response.ok) {
    const body = (await response.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
    throw new ApiError(body?.error?.code ?? `http_${response.status}`, body?.error?.message ?? response.statusText);
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
