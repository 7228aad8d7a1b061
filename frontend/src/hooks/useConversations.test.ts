import { describe, expect, it } from 'vitest';
import { withoutRemoved } from './useConversations';

const summary = (id: string) => ({ id, title: id, created_at: '2030-01-01T00:00:00Z', updated_at: '2030-01-01T00:00:00Z' });

describe('the conversation list', () => {
  it('leaves out conversations found gone, keeping the order of the rest', () => {
    const list = [summary('a'), summary('b'), summary('c')];
    expect(withoutRemoved(list, ['b']).map((c) => c.id)).toEqual(['a', 'c']);
    expect(withoutRemoved(list, []).map((c) => c.id)).toEqual(['a', 'b', 'c']);
  });
});
