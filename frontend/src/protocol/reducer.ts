// Pure folding of one conversation's frames into its state. Nothing here
// guesses about duplicates: the log's seq says what is new, what was already
// applied and what is missing.
//
// The state is the conversation's whole tree (contract 1.2): every message,
// versions included, in creation order, each naming its parent. Which
// version is shown at each level is decided in `tree.ts`.

import type { ChatEvent, EventFrame, Message, Since, SnapshotFrame, SubscribedFrame } from './types';

/**
 * - `live`: events apply as they come.
 * - `resyncing`: a subscribe is in flight; contiguous events still apply, gaps
 *   are not reported again.
 * - `awaiting_snapshot`: the server announced a snapshot; events are dropped
 *   because the snapshot covers everything up to its seq.
 */
export type SyncState = 'live' | 'resyncing' | 'awaiting_snapshot';

/** A message of the tree: `parent_id` always set, null for a first message (and its versions). */
export type TreeMessage = Message & { parent_id: string | null };

export interface ConversationState {
  /** The log life the state belongs to; null until the first event or snapshot. */
  epoch: string | null;
  /** The last seq applied (0: none). */
  seq: number;
  /**
   * Every message of the conversation, versions and branches included, in
   * creation order (the order of their `message` events): a parent always
   * comes before its children, and the last one is the newest, where the
   * server's active path ends.
   */
  tree: readonly TreeMessage[];
  /**
   * Whether the node is known to speak 1.2 (a snapshot with `branches`, or a
   * message with a parent). Until then, a message without `parent_id` that is
   * not the first follows the one before it: a v1 node's linear transcript.
   */
  versioned: boolean;
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
  tree: [],
  versioned: false,
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

/**
 * A snapshot replaces the state. A 1.2 node sends the active path in
 * `messages` and every other message in `branches`, each in creation order:
 * merged back into one list in that order. A v1 node (no `branches`) sends a
 * linear transcript: each message follows the one before it.
 */
export function applySnapshot(frame: SnapshotFrame): ConversationState {
  const versioned = Array.isArray(frame.branches);
  const tree = versioned
    ? mergeByCreation(frame.messages, frame.branches ?? []).map((m) => withParent(m, m.parent_id ?? null))
    : frame.messages.map((m, i) => withParent(m, i === 0 ? null : frame.messages[i - 1]!.id));
  return { epoch: frame.epoch, seq: frame.seq, tree, versioned, sync: 'live' };
}

export function applyEvent(state: ConversationState | undefined, frame: EventFrame): Step {
  // Events of a conversation we sent into start at seq 1 with no `subscribed`.
  const current = state ?? (frame.seq === 1 ? emptyConversation() : undefined);
  if (!current) return { state, resubscribe: {} };
  if (current.sync === 'awaiting_snapshot') return { state: current };

  const sameLife = current.epoch === null || current.epoch === frame.epoch;
  if (sameLife && frame.seq <= current.seq) return { state: current }; // already applied

  if (sameLife && frame.seq === current.seq + 1) {
    return { state: { ...foldEvent(current, frame.event), epoch: frame.epoch, seq: frame.seq } };
  }

  // A gap, or an event of another log life: ask for what we miss once, then
  // wait for the answer instead of asking again on every later event.
  if (current.sync === 'resyncing') return { state: current };
  return { state: { ...current, sync: 'resyncing' }, resubscribe: { since: sinceOf(current) } };
}

function foldEvent(state: ConversationState, event: ChatEvent): ConversationState {
  const { tree } = state;
  if (event.kind === 'message') {
    const m = event.message;
    if (tree.some((x) => x.id === m.id)) return state;
    if (m.parent_id != null) return { ...state, tree: [...tree, withParent(m, m.parent_id)], versioned: true };
    // No parent: a first message (or a version of it) on a 1.2 node; on a v1
    // node, the next message of the transcript.
    const parent = state.versioned ? null : (tree.at(-1)?.id ?? null);
    return { ...state, tree: [...tree, withParent(m, parent)] };
  }
  if (!tree.some((m) => m.id === event.message_id)) return state;
  return { ...state, tree: tree.map((m) => (m.id === event.message_id ? foldIntoMessage(m, event) : m)) };
}

function foldIntoMessage(m: TreeMessage, event: Exclude<ChatEvent, { kind: 'message' }>): TreeMessage {
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

function withParent(m: Message, parent: string | null): TreeMessage {
  return m.parent_id === parent ? (m as TreeMessage) : { ...m, parent_id: parent };
}

/**
 * Two lists each in creation order, merged into one in creation order (by
 * `created_at`; on a tie the active path's message first, which keeps a
 * parent before its child). The active path's last message is the newest of
 * all, so it stays last whatever the clocks say.
 */
export function mergeByCreation(path: readonly Message[], branches: readonly Message[]): Message[] {
  const newest = path.at(-1);
  const rest = path.slice(0, -1);
  const out: Message[] = [];
  let i = 0;
  let j = 0;
  while (i < rest.length || j < branches.length) {
    const a = rest[i];
    const b = branches[j];
    if (a && (!b || compareCreated(a.created_at, b.created_at) <= 0)) {
      out.push(a);
      i++;
    } else {
      out.push(b!);
      j++;
    }
  }
  if (newest) out.push(newest);
  return out;
}

/**
 * Orders two RFC 3339 times, offsets and any number of fraction digits
 * included (so `…:02Z` is before `…:02.5Z`, which a string comparison gets
 * wrong). Unreadable times compare equal.
 */
export function compareCreated(a: string, b: string): number {
  const [sa, fa] = instant(a);
  const [sb, fb] = instant(b);
  if (Number.isNaN(sa) || Number.isNaN(sb)) return 0;
  if (sa !== sb) return sa - sb;
  return fa < fb ? -1 : fa > fb ? 1 : 0;
}

/** Whole seconds since the epoch, and the fraction as nine digits. */
function instant(time: string): [number, string] {
  const parts = /^(.*T\d{2}:\d{2}:\d{2})(?:[.,](\d+))?(.*)$/.exec(time);
  if (!parts) return [NaN, ''];
  return [Date.parse(`${parts[1]}${parts[3]}`), (parts[2] ?? '').padEnd(9, '0').slice(0, 9)];
}
