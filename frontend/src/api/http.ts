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

async function call<T>(method: string, path: string, retry = true): Promise<T> {
  const token = await getToken();
  const response = await fetch(path, { method, headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401 && retry) {
    dropToken(token);
    return call<T>(method, path, false);
  }
  if (!response.ok) {
    const body = (await response.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
    throw new ApiError(body?.error?.code ?? `http_${response.status}`, body?.error?.message ?? response.statusText);
  }
  return (response.status === 204 ? undefined : await response.json()) as T;
}

export async function listConversations(): Promise<ConversationSummary[]> {
  return (await call<{ conversations: ConversationSummary[] }>('GET', '/api/conversations')).conversations;
}

export function deleteConversation(id: string): Promise<void> {
  return call<void>('DELETE', `/api/conversations/${encodeURIComponent(id)}`);
}

export function listModels(): Promise<ModelList> {
  return call<ModelList>('GET', '/api/models');
}
