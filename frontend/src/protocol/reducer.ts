// Pure folding of one conversation's frames into its state. Nothing here
// guesses about duplicates: the log's seq says what is new, what was already
// applied and what is missing.

import type { ChatEvent, EventFrame, Message, Since, SnapshotFrame, SubscribedFrame } from './types';

/**
 * - `live`: events apply as they come.
 * - `resyncing`: a subscribe is in flight; contiguous events still apply, gaps
 *   are not reported again.
 * - `awaiting_snapshot`: the server announced a snapshot; events are dropped
 *   because the snapshot covers everything up to its seq.
 */
export type SyncState = 'live' | 'resyncing' | 'awaiting_snapshot';

export interface ConversationState {
  /** The log life the state belongs to; null until the first event or snapshot. */
  epoch: string | null;
  /** The last seq applied (0: none). */
  seq: number;
  messages: readonly Message[];
  sync: SyncState;
}

export interface Step {
  state: ConversationState | undefined;
  /** Set when the state cannot continue from what arrived: subscribe again. */
  resubscribe?: { since?: Since };
}

export const emptyConversation = (sync: SyncState = 'live'): ConversationState => ({
  epoch: null,
  seq: 0,
  messages: [],
  sync,
});

/** Where to resume from, or nothing when a snapshot is needed. */
export function sinceOf(state: ConversationState | undefined): Since | undefined {
  return state?.epoch != null ? { epoch: state.epoch, seq: state.seq } : undefined;
}

export function applySubscribed(
  state: ConversationState | undefined,
  frame: SubscribedFrame,
): ConversationState {
  const base = state ?? emptyConversation();
  return { ...base, sync: frame.recovered ? 'live' : 'awaiting_snapshot' };
}

export function applySnapshot(frame: SnapshotFrame): ConversationState {
  return { epoch: frame.epoch, seq: frame.seq, messages: frame.messages, sync: 'live' };
}

export function applyEvent(state: ConversationState | undefined, frame: EventFrame): Step {
  // Events of a conversation we sent into start at seq 1 with no `subscribed`.
  const current = state ?? (frame.seq === 1 ? emptyConversation() : undefined);
  if (!current) return { state, resubscribe: {} };
  if (current.sync === 'awaiting_snapshot') return { state: current };

  const sameLife = current.epoch === null || current.epoch === frame.epoch;
  if (sameLife && frame.seq <= current.seq) return { state: current }; // already applied

  if (sameLife && frame.seq === current.seq + 1) {
    return {
      state: {
        ...current,
        epoch: frame.epoch,
        seq: frame.seq,
        messages: foldEvent(current.messages, frame.event),
      },
    };
  }

  // A gap, or an event of another log life: ask for what we miss once, then
  // wait for the answer instead of asking again on every later event.
  if (current.sync === 'resyncing') return { state: current };
  return { state: { ...current, sync: 'resyncing' }, resubscribe: { since: sinceOf(current) } };
}

function foldEvent(messages: readonly Message[], event: ChatEvent): readonly Message[] {
  if (event.kind === 'message') {
    return messages.some((m) => m.id === event.message.id) ? messages : [...messages, event.message];
  }
  return messages.map((m) => (m.id === event.message_id ? foldIntoMessage(m, event) : m));
}

function foldIntoMessage(m: Message, event: Exclude<ChatEvent, { kind: 'message' }>): Message {
  switch (event.kind) {
    case 'delta':
      return { ...m, content: m.content + event.text };
    case 'done':
      return { ...m, status: 'complete' };
    case 'cancelled':
      return { ...m, status: 'cancelled' };
    case 'failed':
      return { ...m, status: 'failed', error: event.error };
  }
}
