import { describe, expect, it } from 'vitest';
import { parseRoute, routeHash } from './route';

describe('the address of what is open', () => {
  it('reads a conversation, and a conversation at a message', () => {
    expect(parseRoute('')).toEqual({ conversation: null, message: null });
    expect(parseRoute('#/c/abc')).toEqual({ conversation: 'abc', message: null });
    expect(parseRoute('#/c/abc/m/def')).toEqual({ conversation: 'abc', message: 'def' });
    expect(parseRoute('#/c/')).toEqual({ conversation: null, message: null });
    expect(parseRoute('#/c//m/def')).toEqual({ conversation: null, message: null });
    expect(parseRoute('#/c/%E0%A4%A')).toEqual({ conversation: null, message: null });
  });

  it('writes what it reads', () => {
    for (const [c, m] of [
      ['a5d39b8d-671e-4149-b960-64a955f78135', null],
      ['a5d39b8d-671e-4149-b960-64a955f78135', '7f69e38b-9af9-4cc0-a342-1758b4309516'],
      ['a/m/b', 'c d'],
    ] as const) {
      expect(parseRoute(routeHash(c, m))).toEqual({ conversation: c, message: m });
    }
  });
});
