import { describe, expect, it } from 'vitest';
import type { ConversationDetail, StoredMessage } from '../api/http';
import { en } from '../i18n/en';
import { vi } from '../i18n/vi';
import { conversationJson, conversationMarkdown, exportFileName, exportLabels, openFence } from './exporting';

const at = new Date('2026-11-27T21:30:05Z');

const message = (id: string, role: 'user' | 'assistant', content: string, extra: Partial<StoredMessage> = {}): StoredMessage => ({
  id,
  conversation_id: 'c1',
  role,
  content,
  status: 'complete',
  created_at: '2026-11-27T21:00:00Z',
  ...extra,
});

const conversation: ConversationDetail = {
  id: 'c1',
  title: 'Sorting in *Rust*',
  epoch: 'e1',
  seq: 12,
  messages: [
    message('u1', 'user', 'How do I sort a vector?'),
    message('a2', 'assistant', 'Use `sort`:\n\n```rust\nv.sort();\n```\n', { model: 'demo', parent_id: 'u1' }),
    message('u2', 'user', 'And in reverse?', { parent_id: 'a2' }),
    message('a3', 'assistant', 'Like this:\n\n```rust\nv.sort_by(|a, b| b.cmp(a));', { status: 'cancelled', parent_id: 'u2' }),
  ],
  branches: [message('a1', 'assistant', 'An earlier version of the answer.', { parent_id: 'u1', model: 'demo' })],
};

describe('the Markdown export', () => {
  const markdown = conversationMarkdown(conversation, exportLabels(en), at);

  it('is the title and the active path, each message under who wrote it', () => {
    expect(markdown).toBe(
      [
        '# Sorting in \\*Rust\\*',
        '',
        '*Exported from chatstream on 2026-11-27 21:30 UTC*',
        '',
        '## You',
        '',
        'How do I sort a vector?',
        '',
        '## Assistant · demo',
        '',
        'Use `sort`:',
        '',
        '```rust',
        'v.sort();',
        '```',
        '',
        '## You',
        '',
        'And in reverse?',
        '',
        '## Assistant',
        '',
        'Like this:',
        '',
        '```rust',
        'v.sort_by(|a, b| b.cmp(a));',
        '```',
        '',
        '*Stopped before the end.*',
        '',
      ].join('\n'),
    );
  });

  it('leaves out the other versions (they are in the JSON)', () => {
    expect(markdown).not.toContain('An earlier version');
  });

  it("is written in the UI's language", () => {
    const vietnamese = conversationMarkdown({ ...conversation, title: null }, exportLabels(vi), at);
    expect(vietnamese).toMatch(/^# Cuộc trò chuyện không tên\n/);
    expect(vietnamese).toContain('## Bạn\n');
    expect(vietnamese).not.toContain('## You');
  });

  it('says when a reply failed', () => {
    const failed = { ...conversation, messages: [message('a9', 'assistant', 'Half', { status: 'failed', error: 'x' })] };
    expect(conversationMarkdown(failed, exportLabels(en), at)).toContain('Half\n\n*This reply could not be completed.*\n');
  });
});

describe('open fences', () => {
  it('finds the fence a stopped reply left open, with its own marker', () => {
    expect(openFence('a\n```js\nx')).toBe('```');
    expect(openFence('~~~~\n```\nx')).toBe('~~~~');
    expect(openFence('```\nx\n```\n')).toBeNull();
    expect(openFence('inline ```code``` only')).toBeNull();
  });
});

describe('the JSON export', () => {
  it('holds the whole tree: the active path and every other version, as the node gave them', () => {
    const json = JSON.parse(conversationJson(conversation, at));
    expect(json).toEqual({
      format: 'chatstream.conversation',
      version: 1,
      exported_at: '2026-11-27T21:30:05.000Z',
      id: 'c1',
      title: 'Sorting in *Rust*',
      epoch: 'e1',
      seq: 12,
      messages: conversation.messages,
      branches: conversation.branches,
    });
  });

  it('has an empty branches list from a node that sends none', () => {
    const { branches: _, ...linear } = conversation;
    expect(JSON.parse(conversationJson(linear, at)).branches).toEqual([]);
  });
});

describe('file names', () => {
  it('come from the title, in any script', () => {
    expect(exportFileName('Sorting in *Rust*!', 'md')).toBe('sorting-in-rust.md');
    expect(exportFileName('Giải thích thuật toán Dijkstra', 'json')).toBe('giải-thích-thuật-toán-dijkstra.json');
    expect(exportFileName(null, 'md')).toBe('chatstream-conversation.md');
    expect(exportFileName('***', 'json')).toBe('chatstream-conversation.json');
    expect(exportFileName('a'.repeat(100), 'md')).toBe(`${'a'.repeat(60)}.md`);
  });
});
