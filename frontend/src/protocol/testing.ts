// Frame builders shared by the protocol's unit tests.

import type { ChatEvent, EventFrame, Message, SnapshotFrame } from './types';

export const CONV = '00000000-0000-4000-8000-000000000001';
export const USER_MSG = '00000000-0000-4000-8000-0000000000a1';
export const BOT_MSG = '00000000-0000-4000-8000-0000000000b1';

export function message(id: string, role: Message['role'], content = '', status: Message['status'] = 'complete'): Message {
  return { id, conversation_id: CONV, role, content, status, created_at: '2025-01-01T00:00:00Z' };
}

export function event(seq: number, ev: ChatEvent, epoch = 'e1', conversation_id = CONV): EventFrame {
  return { type: 'event', conversation_id, epoch, seq, ts: 1_700_000_000_000 + seq, event: ev };
}

/** The log of one exchange: the user's message, the reply's start, `words` deltas, its end. */
export function exchange(words: string[], epoch = 'e1', conversation_id = CONV): EventFrame[] {
  const events: ChatEvent[] = [
    { kind: 'message', message: message(USER_MSG, 'user', 'hello') },
    { kind: 'message', message: message(BOT_MSG, 'assistant', '', 'streaming') },
    ...words.map((text): ChatEvent => ({ kind: 'delta', message_id: BOT_MSG, text })),
    { kind: 'done', message_id: BOT_MSG, finish_reason: 'stop' },
  ];
  return events.map((ev, i) => event(i + 1, ev, epoch, conversation_id));
}

export function snapshot(seq: number, messages: Message[], epoch = 'e1'): SnapshotFrame {
  return { type: 'snapshot', conversation_id: CONV, epoch, seq, messages };
}

/** A message of a tree (1.2): `parent` null for a first message; `at` orders `created_at`. */
export function node(
  id: string,
  role: Message['role'],
  parent: string | null,
  at: number,
  content = '',
  status: Message['status'] = 'complete',
): Message {
  const m = message(id, role, content, status);
  m.created_at = new Date(Date.UTC(2025, 0, 1) + at * 1000).toISOString();
  if (parent !== null) m.parent_id = parent;
  return m;
}

/** Folds events into frames from seq `from`, in one epoch. */
export function log(events: ChatEvent[], from = 1, epoch = 'e1'): EventFrame[] {
  return events.map((ev, i) => event(from + i, ev, epoch));
}

/** The snapshot a 1.2 node sends: `path` (the active path) and `branches`. */
export function treeSnapshot(seq: number, path: Message[], branches: Message[], epoch = 'e1'): SnapshotFrame {
  return { ...snapshot(seq, path, epoch), branches };
}
