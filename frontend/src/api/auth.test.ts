import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AuthUnavailable,
  GuestAuth,
  planToken,
  renewalDelay,
  renewalDue,
  renewalOutcome,
  tokenLifetime,
  type AuthEnvironment,
  type IdentityReplaced,
  type StoredAuth,
} from './auth';

const KEY = 'chatstream.auth';
const HOUR = 3_600_000;
const T0 = Date.parse('2030-01-01T00:00:00Z');

/** A JWT-shaped token (unsigned; only the page reads it) with these claims. */
function jwt(claims: object): string {
  const part = (value: object) => btoa(JSON.stringify(value)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}.signature`;
}

/** A token obtained at `obtained` that lives `lifetime` ms. */
function stored(token: string, obtained = T0, lifetime = 24 * HOUR, user = 'user-1'): StoredAuth {
  return { token, user_id: user, expires_at: new Date(obtained + lifetime).toISOString(), obtained_at: obtained };
}

describe('the renewal schedule', () => {
  it('renews half way through the lifetime', () => {
    expect(renewalDue(stored('t'))).toBe(T0 + 12 * HOUR);
    expect(renewalDelay(stored('t'), T0)).toBe(12 * HOUR);
    expect(renewalDelay(stored('t'), T0 + 11 * HOUR)).toBe(HOUR);
    expect(renewalDelay(stored('t'), T0 + 12 * HOUR)).toBe(0);
    expect(renewalDelay(stored('t'), T0 + 30 * HOUR)).toBe(0);
  });

  it('renews at once a token whose lifetime is unknown (an entry of an older version)', () => {
    const { obtained_at: _, ...old } = stored('t');
    expect(renewalDelay(old, T0)).toBe(0);
    expect(renewalDelay({ ...old, expires_at: 'garbage' }, T0)).toBe(0);
  });

  it('reads the lifetime from the token itself', () => {
    expect(tokenLifetime(jwt({ sub: 'u', iat: 1_000, exp: 1_000 + 7 * 24 * 3600, jti: '~~~>>>???' }))).toBe(7 * 24 * HOUR);
    expect(tokenLifetime('not-a-jwt')).toBeNull();
    expect(tokenLifetime('a.!!!.c')).toBeNull();
    expect(tokenLifetime(jwt({ sub: 'u', exp: 5 }))).toBeNull();
  });

  it('never renews more often than every 30 seconds, whatever the clocks say', () => {
    // expires_at already past on this page's clock, lifetime unknown.
    const odd: StoredAuth = { token: 't', user_id: 'u', expires_at: new Date(T0 - 24 * HOUR).toISOString(), obtained_at: T0 };
    expect(renewalDelay(odd, T0)).toBe(30_000);
  });

  it('has nothing to renew without an identity', () => {
    expect(renewalDelay(null, T0)).toBeNull();
  });

  it('backs off after failed renewals, up to ten minutes', () => {
    const due = T0 + 13 * HOUR;
    expect(renewalDelay(stored('t'), due, 1)).toBe(15_000);
    expect(renewalDelay(stored('t'), due, 2)).toBe(30_000);
    expect(renewalDelay(stored('t'), due, 3)).toBe(60_000);
    expect(renewalDelay(stored('t'), due, 20)).toBe(600_000);
    // Before half-life the schedule ignores failures.
    expect(renewalDelay(stored('t'), T0, 5)).toBe(12 * HOUR);
  });

  it('never asks setTimeout for more than it can wait', () => {
    expect(renewalDelay(stored('t', T0, 365 * 24 * HOUR), T0)).toBe(2 ** 31 - 1);
  });

  it('plans what getToken does', () => {
    const auth = stored('t');
    expect(planToken(null, null, T0)).toBe('sign-in');
    expect(planToken(auth, null, T0 + HOUR)).toBe('use');
    expect(planToken(auth, null, T0 + 13 * HOUR)).toBe('use-and-renew');
    expect(planToken(auth, 't', T0 + HOUR)).toBe('renew-first');
    expect(planToken(auth, 'other', T0 + HOUR)).toBe('use');
    expect(planToken(auth, null, T0 + 24 * HOUR - 30_000)).toBe('renew-first');
    expect(planToken(auth, null, T0 + 25 * HOUR)).toBe('renew-first');
  });

  it('treats only a 401 from the server as an unusable token', () => {
    expect(renewalOutcome(200)).toBe('renewed');
    expect(renewalOutcome(401)).toBe('unusable');
    for (const status of [403, 429, 500, 502, 503] as const) expect(renewalOutcome(status)).toBe('retry-later');
    expect(renewalOutcome('network-error')).toBe('retry-later');
  });
});

/** A fake server and storage for one page. */
class World {
  now = T0;
  readonly store = new Map<string, string>();
  readonly calls: { path: string; token: string | null }[] = [];
  /** What `/api/auth/refresh` answers: a status, or a network failure. */
  refresh: number | 'network-error' = 200;
  guest: number | 'network-error' = 200;
  /** How far this page's clock is ahead of the server's. */
  skew = 0;
  /** Whether the server issues JWT-shaped tokens (else opaque strings). */
  jwt = false;
  private issued = 0;
  readonly env: AuthEnvironment = {
    storage: {
      getItem: (key) => this.store.get(key) ?? null,
      setItem: (key, value) => void this.store.set(key, value),
    },
    now: () => this.now,
    fetch: async (path, init) => {
      const header = (init.headers as Record<string, string>).Authorization;
      const token = header ? header.replace('Bearer ', '') : null;
      this.calls.push({ path, token });
      const answer = path === '/api/auth/refresh' ? this.refresh : this.guest;
      if (answer === 'network-error') throw new TypeError('Failed to fetch');
      const user = path === '/api/auth/refresh' ? this.userOf(token) : `guest-${++this.issued}`;
      const serverNow = this.now - this.skew;
      const iat = Math.floor(serverNow / 1000);
      const body = {
        token: this.jwt ? jwt({ sub: user, iat, exp: iat + 24 * 3600, n: ++this.issued }) : `token-${++this.issued}`,
        user_id: user,
        expires_at: new Date(serverNow + 24 * HOUR).toISOString(),
      };
      return { ok: answer === 200, status: answer, json: async () => body };
    },
  };

  private userOf(token: string | null): string {
    const auth = this.auth();
    return auth && auth.token === token ? auth.user_id : 'unknown';
  }

  auth(): StoredAuth | null {
    return JSON.parse(this.store.get(KEY) ?? 'null') as StoredAuth | null;
  }

  setAuth(auth: StoredAuth): void {
    this.store.set(KEY, JSON.stringify(auth));
  }
}

let world: World;
let auth: GuestAuth;
let replaced: IdentityReplaced[];

beforeEach(() => {
  world = new World();
  auth = new GuestAuth(world.env);
  replaced = [];
});

describe('GuestAuth', () => {
  it('signs in a first visitor quietly', async () => {
    auth.onIdentityReplaced((e) => replaced.push(e));
    const token = await auth.getToken();
    expect(world.calls).toEqual([{ path: '/api/auth/guest', token: null }]);
    expect(world.auth()).toMatchObject({ token, obtained_at: T0 });
    expect(replaced).toEqual([]);
  });

  it('uses a fresh token as it is', async () => {
    world.setAuth(stored('fresh'));
    world.now = T0 + HOUR;
    expect(await auth.getToken()).toBe('fresh');
    expect(world.calls).toEqual([]);
  });

  it('renews a token past half its lifetime for the same user, using it meanwhile', async () => {
    world.setAuth(stored('old'));
    world.now = T0 + 13 * HOUR;
    expect(await auth.getToken()).toBe('old');
    await vi.waitFor(() => expect(world.auth()?.token).not.toBe('old'));
    expect(world.calls).toEqual([{ path: '/api/auth/refresh', token: 'old' }]);
    expect(world.auth()).toMatchObject({ user_id: 'user-1', obtained_at: T0 + 13 * HOUR });
  });

  it('renews a refused token before using it, keeping the user', async () => {
    world.setAuth(stored('refused'));
    world.now = T0 + HOUR;
    auth.onIdentityReplaced((e) => replaced.push(e));
    auth.dropToken('refused');
    const token = await auth.getToken();
    expect(token).not.toBe('refused');
    expect(world.calls).toEqual([{ path: '/api/auth/refresh', token: 'refused' }]);
    expect(world.auth()?.user_id).toBe('user-1');
    expect(replaced).toEqual([]);
  });

  it('starts a new guest only when the server refuses to renew, and says so', async () => {
    world.setAuth(stored('bad'));
    world.now = T0 + HOUR;
    world.refresh = 401;
    auth.dropToken('bad');
    const token = await auth.getToken();
    expect(world.calls.map((c) => c.path)).toEqual(['/api/auth/refresh', '/api/auth/guest']);
    expect(world.auth()?.token).toBe(token);
    // Told even to a listener that came later (the UI mounts after the first sign-in).
    auth.onIdentityReplaced((e) => replaced.push(e));
    expect(replaced).toEqual([{ previousUserId: 'user-1', userId: world.auth()!.user_id }]);
  });

  it('tries to renew an expired token first (clocks differ), then starts a new guest', async () => {
    world.setAuth(stored('expired'));
    world.now = T0 + 30 * HOUR;
    world.refresh = 401;
    await auth.getToken();
    expect(world.calls.map((c) => c.path)).toEqual(['/api/auth/refresh', '/api/auth/guest']);
  });

  it('keeps the identity when the server cannot be reached', async () => {
    world.setAuth(stored('refused'));
    world.now = T0 + HOUR;
    world.refresh = 'network-error';
    auth.dropToken('refused');
    await expect(auth.getToken()).rejects.toBeInstanceOf(AuthUnavailable);
    world.refresh = 503;
    await expect(auth.getToken()).rejects.toBeInstanceOf(AuthUnavailable);
    expect(world.calls.every((c) => c.path === '/api/auth/refresh')).toBe(true);
    expect(world.auth()?.token).toBe('refused');
    // Back online: renewed, same user.
    world.refresh = 200;
    await auth.getToken();
    expect(world.auth()?.user_id).toBe('user-1');
  });

  it('renews on schedule when the page clock is days ahead of the server', async () => {
    world.jwt = true;
    world.skew = 5 * 24 * HOUR;
    const token = await auth.getToken();
    // expires_at is in this page's past, but the token's own lifetime counts.
    expect(Date.parse(world.auth()!.expires_at)).toBeLessThan(world.now);
    expect(world.auth()!.lifetime_ms).toBe(24 * HOUR);
    world.now += HOUR;
    expect(await auth.getToken()).toBe(token);
    expect(renewalDelay(world.auth(), world.now)).toBe(11 * HOUR);
    expect(world.calls).toHaveLength(1);
  });

  it('uses a token close to its expiry while the server cannot renew it', async () => {
    world.setAuth(stored('last-minute'));
    world.now = T0 + 24 * HOUR - 30_000;
    world.refresh = 'network-error';
    expect(await auth.getToken()).toBe('last-minute');
  });

  it('shares one renewal between concurrent callers', async () => {
    world.setAuth(stored('refused'));
    auth.dropToken('refused');
    const tokens = await Promise.all([auth.getToken(), auth.getToken(), auth.getToken()]);
    expect(new Set(tokens).size).toBe(1);
    expect(world.calls).toHaveLength(1);
  });

  it('keeps a token another tab renewed when an older one is refused', async () => {
    world.setAuth(stored('newer'));
    auth.dropToken('older');
    expect(await auth.getToken()).toBe('newer');
    expect(world.calls).toEqual([]);
  });

  it('reports another tab starting a new guest', () => {
    auth.onIdentityReplaced((e) => replaced.push(e));
    const before = JSON.stringify(stored('a', T0, HOUR, 'user-1'));
    auth.storedElsewhere(before, JSON.stringify(stored('b', T0, HOUR, 'user-1')));
    auth.storedElsewhere(null, before);
    expect(replaced).toEqual([]);
    auth.storedElsewhere(before, JSON.stringify(stored('c', T0, HOUR, 'user-2')));
    expect(replaced).toEqual([{ previousUserId: 'user-1', userId: 'user-2' }]);
  });
});

describe('GuestAuth timer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('renews at start-up when due, then half way through each new lifetime', async () => {
    world.setAuth(stored('old'));
    world.now = T0 + 20 * HOUR;
    const stop = auth.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(world.calls).toEqual([{ path: '/api/auth/refresh', token: 'old' }]);
    const renewed = world.auth()!;
    expect(renewed.user_id).toBe('user-1');

    // The next renewal waits for half of the new token's lifetime.
    await vi.advanceTimersByTimeAsync(12 * HOUR - 1);
    expect(world.calls).toHaveLength(1);
    world.now += 12 * HOUR;
    await vi.advanceTimersByTimeAsync(1);
    expect(world.calls).toHaveLength(2);
    expect(world.calls[1]).toEqual({ path: '/api/auth/refresh', token: renewed.token });
    stop();
  });

  it('retries a failed renewal with backoff, without replacing the identity', async () => {
    world.setAuth(stored('old'));
    world.now = T0 + 13 * HOUR;
    world.refresh = 503;
    const stop = auth.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(world.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(14_999);
    expect(world.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(world.calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(world.calls).toHaveLength(3);
    world.refresh = 200;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(world.calls).toHaveLength(4);
    expect(world.auth()?.user_id).toBe('user-1');
    expect(world.calls.every((c) => c.path === '/api/auth/refresh')).toBe(true);
    stop();
  });

  it('does nothing once stopped', async () => {
    world.setAuth(stored('old'));
    world.now = T0 + HOUR;
    auth.start()();
    world.now = T0 + 13 * HOUR;
    await vi.advanceTimersByTimeAsync(24 * HOUR);
    expect(world.calls).toEqual([]);
  });
});
