// Guest identity. The token lives in localStorage so reloads and other tabs
// are the same user; it is read back on every use so that a token renewed by
// one tab is the one every tab uses next.
//
// A token is renewed with `POST /api/auth/refresh` (same user, new expiry)
// once half its lifetime has passed, by a timer and whenever it is used, and
// when the server refuses it. Only when the server refuses to renew it too
// (401: expired, or signed with a secret the server no longer has) does the
// page start a new guest identity, and then it says so: the conversations of
// the previous identity cannot be opened any more.

const KEY = 'chatstream.auth';
/** A token this close to its expiry is renewed before it is used. */
const EXPIRY_MARGIN_MS = 60_000;
/** After a failed renewal (network, server busy), wait this long, doubling… */
const RETRY_BASE_MS = 15_000;
/** …up to this. */
const RETRY_CAP_MS = 10 * 60_000;
/** The longest delay `setTimeout` takes (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Renewals never follow each other faster than this, whatever the clocks say. */
const MIN_RENEWAL_INTERVAL_MS = 30_000;

/** What the page keeps of its identity. */
export interface StoredAuth {
  token: string;
  user_id: string;
  /** RFC 3339, from the server. */
  expires_at: string;
  /** When this page received the token (its own clock, ms); absent in entries of older versions. */
  obtained_at?: number;
  /**
   * How long the token lives (ms), from its own `iat` and `exp`: on the
   * server's clock, so a page whose clock is off still renews in time.
   */
  lifetime_ms?: number;
}

/** The server's answer to `/api/auth/guest` and `/api/auth/refresh`. */
interface IssuedToken {
  token: string;
  user_id: string;
  expires_at: string;
}

/** The identity the page had was replaced by a new guest. */
export interface IdentityReplaced {
  previousUserId: string;
  userId: string;
}

/** The server refused to sign in or renew for a reason other than the token (network, 5xx, 429). */
export class AuthUnavailable extends Error {}

// ---- the renewal schedule (pure) ----

/** The token's lifetime in ms, from its claims (`exp - iat`), if it has them. */
export function tokenLifetime(token: string): number | null {
  try {
    const payload = token.split('.')[1];
    if (!payload) return null;
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '='))) as { iat?: unknown; exp?: unknown };
    if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number' || claims.exp <= claims.iat) return null;
    return (claims.exp - claims.iat) * 1000;
  } catch {
    return null;
  }
}

/** When `auth` expires, on this page's clock where its lifetime is known. */
function expiryOf(auth: StoredAuth): number {
  const { obtained_at: obtained, lifetime_ms: lifetime } = auth;
  if (obtained !== undefined && lifetime !== undefined && Number.isFinite(obtained + lifetime)) return obtained + lifetime;
  return Date.parse(auth.expires_at);
}

/** When `auth` should be renewed: half way through its lifetime. */
export function renewalDue(auth: StoredAuth): number {
  const obtained = auth.obtained_at;
  // Without the instant it was obtained (an entry from an older version of the
  // page) its lifetime is unknown: renew it now.
  if (obtained === undefined || !Number.isFinite(obtained)) return -Infinity;
  const expires = expiryOf(auth);
  const halfway = Number.isNaN(expires) ? -Infinity : obtained + (expires - obtained) / 2;
  return Math.max(halfway, obtained + MIN_RENEWAL_INTERVAL_MS);
}

/** Whether `auth` is too close to its expiry (or past it) to be used as it is. */
export function nearlyExpired(auth: StoredAuth, now: number): boolean {
  const expires = expiryOf(auth);
  return Number.isNaN(expires) || now >= expires - EXPIRY_MARGIN_MS;
}

/** Whether `auth` has expired (as far as this page can tell). */
export function expired(auth: StoredAuth, now: number): boolean {
  const expires = expiryOf(auth);
  return Number.isNaN(expires) || now >= expires;
}

/**
 * How long the renewal timer waits: until half the lifetime has passed, or,
 * once it has and renewals failed `failures` times in a row, a backoff
 * (15 s, 30 s, … 10 min). `null`: no identity yet, nothing to renew.
 */
export function renewalDelay(auth: StoredAuth | null, now: number, failures = 0): number | null {
  if (!auth) return null;
  const wait = renewalDue(auth) - now;
  if (wait > 0) return Math.min(wait, MAX_TIMER_MS);
  if (failures <= 0) return 0;
  return Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.min(failures - 1, 16));
}

/** What `getToken` does with the stored identity. */
export type TokenPlan =
  /** No identity yet: sign in as a guest (nothing to tell the user). */
  | 'sign-in'
  /** Use it as it is. */
  | 'use'
  /** Use it, and renew it in the background: half its lifetime has passed. */
  | 'use-and-renew'
  /** Renew it first: the server refused it or it (nearly) expired. */
  | 'renew-first';

export function planToken(auth: StoredAuth | null, refused: string | null, now: number): TokenPlan {
  if (!auth) return 'sign-in';
  if (auth.token === refused || nearlyExpired(auth, now)) return 'renew-first';
  return now >= renewalDue(auth) ? 'use-and-renew' : 'use';
}

/** What a renewal's answer means. */
export type RenewalOutcome =
  /** A new token for the same user. */
  | 'renewed'
  /** The token is unusable: the server will not renew it. A new guest is needed. */
  | 'unusable'
  /** The server could not be asked (network, 5xx, rate limit): try again later, keep the token. */
  | 'retry-later';

export function renewalOutcome(status: number | 'network-error'): RenewalOutcome {
  if (status === 'network-error') return 'retry-later';
  if (status >= 200 && status < 300) return 'renewed';
  if (status === 401) return 'unusable';
  return 'retry-later';
}

// ---- the identity of one page ----

export interface AuthEnvironment {
  storage: Pick<Storage, 'getItem' | 'setItem'>;
  fetch: (path: string, init: RequestInit) => Promise<Pick<Response, 'ok' | 'status' | 'json'>>;
  now: () => number;
}

export class GuestAuth {
  /** The token the server last refused, until it is replaced. */
  private refused: string | null = null;
  /** The one renewal or sign-in under way: concurrent callers share it. */
  private inFlight: Promise<StoredAuth> | null = null;
  private readonly listeners = new Set<(event: IdentityReplaced) => void>();
  /** Replacements that happened while nobody listened (before the UI mounted). */
  private unseen: IdentityReplaced[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private running = false;
  /** When a background renewal last failed, so that every use does not try again at once. */
  private lastFailure = -Infinity;

  constructor(private readonly env: AuthEnvironment) {}

  read(): StoredAuth | null {
    try {
      const auth = JSON.parse(this.env.storage.getItem(KEY) ?? 'null') as StoredAuth | null;
      return auth && typeof auth.token === 'string' && typeof auth.user_id === 'string' ? auth : null;
    } catch {
      return null; // a corrupt entry: sign in again
    }
  }

  /** A token to use now, renewed or replaced first if needed. */
  async getToken(): Promise<string> {
    const auth = this.read();
    const now = this.env.now();
    switch (planToken(auth, this.refused, now)) {
      case 'use':
        return auth!.token;
      case 'use-and-renew':
        this.renewSoon();
        return auth!.token;
      case 'sign-in':
        return (await this.renewOrReplace()).token;
      case 'renew-first':
        try {
          return (await this.renewOrReplace()).token;
        } catch (error) {
          // The server could not be asked: a token close to its expiry but
          // not past it, and not refused, still serves meanwhile.
          const usable = auth!.token !== this.refused && !expired(auth!, now);
          if (error instanceof AuthUnavailable && usable) return auth!.token;
          throw error;
        }
    }
  }

  /** The server refused `token`: the next `getToken` renews it (or replaces it if it cannot be renewed). */
  dropToken(token?: string): void {
    const stored = this.read();
    // Another tab may already have stored a fresh token; keep that one.
    if (token === undefined) this.refused = stored?.token ?? null;
    else if (stored?.token === token) this.refused = token;
  }

  /** Renew the stored token now if half its lifetime has passed (or it was refused). */
  async renewIfDue(): Promise<void> {
    const plan = planToken(this.read(), this.refused, this.env.now());
    if (plan === 'use-and-renew' || plan === 'renew-first') await this.renewOrReplace();
  }

  /** Called with every replacement of this page's identity by a new guest. */
  onIdentityReplaced(listener: (event: IdentityReplaced) => void): () => void {
    this.listeners.add(listener);
    const unseen = this.unseen;
    this.unseen = [];
    for (const event of unseen) listener(event);
    return () => this.listeners.delete(listener);
  }

  /** Another tab changed the stored identity (the `storage` event). */
  storedElsewhere(oldValue: string | null, newValue: string | null): void {
    const userOf = (value: string | null) => {
      try {
        return (JSON.parse(value ?? 'null') as StoredAuth | null)?.user_id ?? null;
      } catch {
        return null;
      }
    };
    const before = userOf(oldValue);
    const after = userOf(newValue);
    if (before && after && before !== after) this.replaced({ previousUserId: before, userId: after });
    if (this.running) this.schedule();
  }

  /** Keep the token renewed by a timer until `stop` is called. */
  start(): () => void {
    this.running = true;
    this.schedule();
    return () => {
      this.running = false;
      clearTimeout(this.timer);
    };
  }

  /** Re-check the schedule (the tab woke up: timers may have been held back). */
  wake(): void {
    if (this.running) this.schedule();
  }

  // ---- internals ----

  private schedule(): void {
    clearTimeout(this.timer);
    const delay = renewalDelay(this.read(), this.env.now(), this.failures);
    if (delay === null || !this.running) return;
    this.timer = setTimeout(() => {
      this.renewIfDue().then(
        () => {
          this.failures = 0;
          this.schedule();
        },
        () => {
          this.failures += 1;
          this.schedule();
        },
      );
    }, delay);
  }

  private renewSoon(): void {
    // The current token is still good: after a failure, leave the retries to
    // the timer for a while.
    if (this.env.now() - this.lastFailure < RETRY_BASE_MS) return;
    this.renewOrReplace().then(
      () => this.running && this.schedule(),
      () => {
        this.lastFailure = this.env.now();
      },
    );
  }

  private renewOrReplace(): Promise<StoredAuth> {
    this.inFlight ??= this.renewOrReplaceOnce().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  private async renewOrReplaceOnce(): Promise<StoredAuth> {
    const auth = this.read();
    if (!auth) return this.signIn(null);
    const outcome = await this.post('/api/auth/refresh', auth.token);
    if (outcome.kind === 'renewed') return this.store(outcome.issued);
    if (outcome.kind === 'retry-later') throw new AuthUnavailable('the token could not be renewed now');
    // Unusable. Another tab may have replaced it meanwhile: use theirs.
    const now = this.read();
    if (now && now.token !== auth.token && now.token !== this.refused) return now;
    return this.signIn(auth.user_id);
  }

  private async signIn(previousUserId: string | null): Promise<StoredAuth> {
    const outcome = await this.post('/api/auth/guest', null);
    if (outcome.kind !== 'renewed') throw new AuthUnavailable('guest sign-in is not possible now');
    const auth = this.store(outcome.issued);
    if (previousUserId !== null && previousUserId !== auth.user_id) {
      this.replaced({ previousUserId, userId: auth.user_id });
    }
    return auth;
  }

  private async post(
    path: string,
    token: string | null,
  ): Promise<{ kind: 'renewed'; issued: IssuedToken } | { kind: 'unusable' | 'retry-later' }> {
    let response;
    try {
      response = await this.env.fetch(path, {
        method: 'POST',
        headers: token === null ? {} : { Authorization: `Bearer ${token}` },
      });
    } catch {
      return { kind: 'retry-later' };
    }
    const kind = renewalOutcome(response.status);
    if (kind !== 'renewed') return { kind };
    try {
      const issued = (await response.json()) as IssuedToken;
      if (typeof issued?.token === 'string' && typeof issued.user_id === 'string') return { kind, issued };
    } catch {
      // fall through: an answer we cannot read is a failed attempt
    }
    return { kind: 'retry-later' };
  }

  private store(issued: IssuedToken): StoredAuth {
    const auth: StoredAuth = {
      token: issued.token,
      user_id: issued.user_id,
      expires_at: issued.expires_at,
      obtained_at: this.env.now(),
    };
    const lifetime = tokenLifetime(issued.token);
    if (lifetime !== null) auth.lifetime_ms = lifetime;
    this.env.storage.setItem(KEY, JSON.stringify(auth));
    this.refused = null;
    this.failures = 0;
    return auth;
  }

  private replaced(event: IdentityReplaced): void {
    if (this.listeners.size === 0) this.unseen.push(event);
    for (const listener of this.listeners) listener(event);
  }
}

// ---- the page's identity, on the browser's storage and network ----

let page: GuestAuth | null = null;

/** The page's identity (created on first use, so that tests never touch the browser's). */
export function pageAuth(): GuestAuth {
  if (!page) {
    const auth = new GuestAuth({
      storage: localStorage,
      fetch: (path, init) => fetch(path, init),
      now: () => Date.now(),
    });
    window.addEventListener('storage', (event) => {
      if (event.key === KEY) auth.storedElsewhere(event.oldValue, event.newValue);
    });
    page = auth;
  }
  return page;
}

export function getToken(): Promise<string> {
  return pageAuth().getToken();
}

/** The server refused the token: the next `getToken` renews it, or starts a new guest if it cannot be renewed. */
export function dropToken(refused?: string): void {
  pageAuth().dropToken(refused);
}
