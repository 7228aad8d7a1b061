// Guest identity. The token lives in localStorage so reloads and other tabs
// are the same user; it is read back on every use so that a token renewed by
// one tab is the one every tab uses next.

const KEY = 'chatstream.auth';
/** Renew this long before expiry, so a token never lapses between check and use. */
const RENEW_MARGIN_MS = 60_000;

interface StoredAuth {
  token: string;
  user_id: string;
  expires_at: string;
}

function read(): StoredAuth | null {
  try {
    const auth = JSON.parse(localStorage.getItem(KEY) ?? 'null') as StoredAuth | null;
    return auth && typeof auth.token === 'string' ? auth : null;
  } catch {
    return null; // a corrupt entry: sign in again
  }
}

let signingIn: Promise<StoredAuth> | null = null;

async function signIn(): Promise<StoredAuth> {
  const response = await fetch('/api/auth/guest', { method: 'POST' });
  if (!response.ok) throw new Error(`guest sign-in failed: HTTP ${response.status}`);
  const auth = (await response.json()) as StoredAuth;
  localStorage.setItem(KEY, JSON.stringify(auth));
  return auth;
}

export async function getToken(): Promise<string> {
  const auth = read();
  if (auth && Date.parse(auth.expires_at) - Date.now() > RENEW_MARGIN_MS) return auth.token;
  // Concurrent callers share one sign-in instead of creating several guests.
  signingIn ??= signIn().finally(() => {
    signingIn = null;
  });
  return (await signingIn).token;
}

/** The server refused the token: the next `getToken` signs in again. */
export function dropToken(refused?: string): void {
  // Another tab may already have stored a fresh token; keep that one.
  if (refused === undefined || read()?.token === refused) localStorage.removeItem(KEY);
}
