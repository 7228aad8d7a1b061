import { describe, expect, it } from 'vitest';
import {
  applyEvent,
  applySnapshot,
  applySubscribed,
  compareCreated,
  mergeByCreation,
  type ConversationState,
  type TreeMessage,
} from './reducer';
import { choose, followUpParent, reveal, visiblePath, type Choices } from './tree';
import { CONV, log, message, node, snapshot, treeSnapshot } from './testing';
import type { ChatEvent, EventFrame, Message } from './types';

// One conversation with every kind of version (contract 1.2):
//   U1 ─ A1            the first reply
//      └ A2 ─ U2 ─ A4  regenerated; then a question sent from it; its reply stopped…
//                 └ A5 …and continued (the newest message)
//   U1b ─ A3           the first question edited, and its reply
const U1 = 'u1';
const A1 = 'a1';
const A2 = 'a2';
const U1B = 'u1b';
const A3 = 'a3';
const U2 = 'u2';
const A4 = 'a4';
const A5 = 'a5';

const said = (m: Message): ChatEvent => ({ kind: 'message', message: m });
const delta = (id: string, text: string): ChatEvent => ({ kind: 'delta', message_id: id, text });
const done = (id: string): ChatEvent => ({ kind: 'done', message_id: id, finish_reason: 'stop' });

const EVENTS: ChatEvent[] = [
  said(node(U1, 'user', null, 1, 'hello')),
  said(node(A1, 'assistant', U1, 2, '', 'streaming')),
  delta(A1, 'first'),
  done(A1),
  // regenerate A1
  said(node(A2, 'assistant', U1, 3, '', 'streaming')),
  delta(A2, 'second'),
  done(A2),
  // edit U1
  said(node(U1B, 'user', null, 4, 'hello again')),
  said(node(A3, 'assistant', U1B, 5, '', 'streaming')),
  delta(A3, 'third'),
  done(A3),
  // send with parent_id A2 (the reader went back to the first question's second reply)
  said(node(U2, 'user', A2, 6, 'and then?')),
  said(node(A4, 'assistant', U2, 7, '', 'streaming')),
  delta(A4, 'four'),
  { kind: 'cancelled', message_id: A4 },
  // continue A4: a version beside it whose first delta is A4's whole text
  said(node(A5, 'assistant', U2, 8, '', 'streaming')),
  delta(A5, 'four'),
  delta(A5, 'th, continued'),
  done(A5),
];
const LOG = log(EVENTS);

function fold(frames: EventFrame[], start?: ConversationState) {
  let state = start;
  const resubscribes: unknown[] = [];
  for (const frame of frames) {
    const step = applyEvent(state, frame);
    state = step.state;
    if (step.resubscribe) resubscribes.push(step.resubscribe);
  }
  return { state: state!, resubscribes };
}

const ids = (state: ConversationState, choices?: Choices) => visiblePath(state.tree, choices).map((s) => s.message.id);

/** The snapshot a 1.2 node sends of a state: the path to the newest message, and the rest, as the server shapes them. */
function serverSnapshot(state: ConversationState, epoch = 'e1') {
  const byId = new Map(state.tree.map((m) => [m.id, m]));
  const onPath = new Set<string>();
  for (let m = state.tree.at(-1); m; m = m.parent_id ? byId.get(m.parent_id) : undefined) onPath.add(m.id);
  // The server leaves `parent_id` out of a first message.
  const wire = (m: TreeMessage): Message => {
    const { parent_id, ...rest } = m;
    return parent_id === null ? rest : m;
  };
  return treeSnapshot(
    state.seq,
    state.tree.filter((m) => onPath.has(m.id)).map(wire),
    state.tree.filter((m) => !onPath.has(m.id)).map(wire),
    epoch,
  );
}

describe('the tree folded from events', () => {
  it('keeps every version, each under its parent, in creation order', () => {
    const { state, resubscribes } = fold(LOG);
    expect(resubscribes).toEqual([]);
    expect(state.seq).toBe(EVENTS.length);
    expect(state.versioned).toBe(true);
    expect(state.tree.map((m) => [m.id, m.parent_id])).toEqual([
      [U1, null],
      [A1, U1],
      [A2, U1],
      [U1B, null],
      [A3, U1B],
      [U2, A2],
      [A4, U2],
      [A5, U2],
    ]);
    const text = Object.fromEntries(state.tree.map((m) => [m.id, [m.content, m.status]]));
    expect(text).toMatchObject({
      [A1]: ['first', 'complete'],
      [A2]: ['second', 'complete'],
      [A4]: ['four', 'cancelled'],
      [A5]: ['fourth, continued', 'complete'],
    });
  });

  it('shows the path to the newest message, with each level’s versions', () => {
    const { state } = fold(LOG);
    const path = visiblePath(state.tree);
    expect(path.map((s) => [s.message.id, s.siblings, s.index])).toEqual([
      [U1, [U1, U1B], 0],
      [A2, [A1, A2], 1],
      [U2, [U2], 0],
      [A5, [A4, A5], 1],
    ]);
  });

  it('shows each new version as it is created', () => {
    const upTo = (n: number) => ids(fold(LOG.slice(0, n)).state);
    expect(upTo(4)).toEqual([U1, A1]);
    expect(upTo(5)).toEqual([U1, A2]); // regenerated: the new reply, still empty
    expect(upTo(8)).toEqual([U1B]); // edited: the new question, its reply not there yet
    expect(upTo(9)).toEqual([U1B, A3]);
    expect(upTo(12)).toEqual([U1, A2, U2]); // sent from the older branch: that branch continues
    expect(upTo(16)).toEqual([U1, A2, U2, A5]);
  });
});

describe('choosing versions', () => {
  it('shows the version picked, and below it the newest of its own subtree', () => {
    const { state } = fold(LOG);
    expect(ids(state, choose(state.tree, {}, U1B))).toEqual([U1B, A3]);
    expect(ids(state, choose(state.tree, {}, A1))).toEqual([U1, A1]);
    expect(ids(state, choose(state.tree, {}, A4))).toEqual([U1, A2, U2, A4]);
    const path = visiblePath(state.tree, choose(state.tree, {}, A1));
    expect(path[1]).toMatchObject({ siblings: [A1, A2], index: 0 });
  });

  it('remembers a choice below one while another level changes', () => {
    const { state } = fold(LOG);
    let choices = choose(state.tree, {}, A4);
    choices = choose(state.tree, choices, U1B);
    expect(ids(state, choices)).toEqual([U1B, A3]);
    choices = choose(state.tree, choices, U1);
    expect(ids(state, choices)).toEqual([U1, A2, U2, A4]);
  });

  it('gives way to a version created after it (asked for here or in another tab)', () => {
    const first = fold(LOG.slice(0, 7)).state;
    const choices = choose(first.tree, {}, A1);
    expect(ids(first, choices)).toEqual([U1, A1]);
    // An edit of the first question: newer than the choice, so shown.
    const edited = fold(LOG.slice(7, 11), first).state;
    expect(ids(edited, choices)).toEqual([U1B, A3]);
    // A choice made now holds again, and the one below it still does.
    expect(ids(edited, choose(edited.tree, choices, U1))).toEqual([U1, A1]);
  });

  it('keeps a choice when only text arrives, but not when a new turn starts under it', () => {
    const started = fold(LOG.slice(0, 13)).state; // A4 streaming, empty
    const choices = choose(started.tree, {}, U1B);
    expect(ids(fold(LOG.slice(13, 15), started).state, choices)).toEqual([U1B, A3]);
    // A new message under the root level (the continued reply) is newer than the choice.
    expect(ids(fold(LOG.slice(13), started).state, choices)).toEqual([U1, A2, U2, A5]);
  });

  it('ignores a choice of a message it does not hold', () => {
    const { state } = fold(LOG);
    const choices = choose(state.tree, {}, 'nope');
    expect(choices).toEqual({});
    expect(ids(state, { '': { id: 'nope', at: 99 } })).toEqual([U1, A2, U2, A5]);
  });

  it('says which message a new question follows when it is not the newest', () => {
    const { state } = fold(LOG);
    const at = (choices: Choices) => followUpParent(state.tree, visiblePath(state.tree, choices));
    expect(at({})).toBeUndefined(); // the newest path: the server's default
    expect(at(choose(state.tree, {}, A4))).toBe(A4);
    expect(at(choose(state.tree, {}, U1B))).toBe(A3);
    expect(at(choose(state.tree, {}, A1))).toBe(A1);
    // A question with no reply shown last (its reply not there yet): nothing to follow.
    const edited = fold(LOG.slice(0, 8)).state;
    expect(followUpParent(edited.tree, visiblePath(edited.tree, choose(edited.tree, {}, U1)))).toBe(A2);
    expect(followUpParent(edited.tree, visiblePath(edited.tree))).toBeUndefined();
  });

  it('reveals a message on another branch: every level above it', () => {
    const { state } = fold(LOG);
    expect(ids(state, reveal(state.tree, {}, A3))).toEqual([U1B, A3]);
    expect(ids(state, reveal(state.tree, {}, A1))).toEqual([U1, A1]);
    expect(ids(state, reveal(state.tree, choose(state.tree, {}, U1B), A4))).toEqual([U1, A2, U2, A4]);
  });
});

describe('snapshots of a tree', () => {
  it('hold the same tree as the events, from any point of the log', () => {
    const whole = fold(LOG).state;
    for (let at = 0; at <= LOG.length; at++) {
      const before = fold(LOG.slice(0, at), applySnapshot(snapshot(0, []))).state;
      const filled = applySnapshot(serverSnapshot(before));
      expect(filled.tree, `snapshot at seq ${at}`).toEqual(before.tree);
      const after = fold(LOG.slice(at), filled);
      expect(after.resubscribes).toEqual([]);
      expect(after.state.tree, `snapshot at seq ${at}, then events`).toEqual(whole.tree);
      expect(ids(after.state)).toEqual([U1, A2, U2, A5]);
    }
  });

  it('of a new epoch (a restarted node) keep the tree, and choices still apply', () => {
    const old = fold(LOG).state;
    const choices = choose(old.tree, {}, U1B);
    const rebuilt = applySnapshot(serverSnapshot(old, 'e2'));
    expect(rebuilt).toMatchObject({ epoch: 'e2', seq: old.seq, versioned: true });
    expect(ids(rebuilt, choices)).toEqual([U1B, A3]);
    // Events continue in the new epoch; one of the old epoch is a gap.
    const next = applyEvent(rebuilt, log([said(node('u3', 'user', A5, 9, 'more'))], old.seq + 1, 'e2')[0]!);
    expect(ids(next.state!)).toEqual([U1, A2, U2, A5, 'u3']);
    const stale = applyEvent(rebuilt, log([delta(A5, '!')], old.seq + 1, 'e1')[0]!);
    expect(stale.resubscribe).toEqual({ since: { epoch: 'e2', seq: old.seq } });
  });

  it('drop events in flight that the announced snapshot covers', () => {
    const partial = fold(LOG.slice(0, 6)).state;
    const waiting = applySubscribed(partial, { type: 'subscribed', conversation_id: CONV, epoch: 'e1', seq: 12, recovered: false });
    expect(applyEvent(waiting, LOG[6]!)).toEqual({ state: waiting });
    const filled = applySnapshot(serverSnapshot(fold(LOG.slice(0, 12)).state));
    expect(fold(LOG, filled).state.tree).toEqual(fold(LOG).state.tree);
  });

  it('keep a first message edited (no parent) apart from a v1 transcript', () => {
    // The edited first question and its reply are the active path; the old pair are branches.
    const filled = applySnapshot(
      treeSnapshot(
        8,
        [node(U1B, 'user', null, 3, 'again'), node(A3, 'assistant', U1B, 4, 'x')],
        [node(U1, 'user', null, 1, 'hello'), node(A1, 'assistant', U1, 2, 'y')],
      ),
    );
    expect(filled.tree.map((m) => [m.id, m.parent_id])).toEqual([
      [U1, null],
      [A1, U1],
      [U1B, null],
      [A3, U1B],
    ]);
    expect(visiblePath(filled.tree).map((s) => [s.message.id, s.index, s.siblings.length])).toEqual([
      [U1B, 1, 2],
      [A3, 0, 1],
    ]);
    // Later events know the node speaks 1.2: a message without parent is another first-message version.
    const next = applyEvent(filled, log([said(node('u1c', 'user', null, 5, 'third try'))], 9)[0]!);
    expect(visiblePath(next.state!.tree)[0]).toMatchObject({ index: 2, siblings: [U1, U1B, 'u1c'] });
  });
});

describe('duplicates and gaps in a branched log', () => {
  it('applies each event once however often it comes', () => {
    const replayed = LOG.flatMap((frame, i) => (i > 0 ? [LOG[i - 1]!, frame, frame] : [frame]));
    const { state, resubscribes } = fold(replayed);
    expect(resubscribes).toEqual([]);
    expect(state.tree).toEqual(fold(LOG).state.tree);
  });

  it('asks once to resume after a gap, and ends with the same tree', () => {
    const { state, resubscribes } = fold([...LOG.slice(0, 9), ...LOG.slice(10, 14)]);
    expect(resubscribes).toEqual([{ since: { epoch: 'e1', seq: 9 } }]);
    expect(state.seq).toBe(9);
    const resumed = applySubscribed(state, { type: 'subscribed', conversation_id: CONV, epoch: 'e1', seq: 19, recovered: true });
    const after = fold(LOG.slice(5), resumed);
    expect(after.resubscribes).toEqual([]);
    expect(after.state.tree).toEqual(fold(LOG).state.tree);
  });
});

describe('a v1 node (no parent ids, no branches)', () => {
  it('reads a snapshot as a linear transcript', () => {
    const filled = applySnapshot(
      snapshot(8, [message('m1', 'user', 'q1'), message('m2', 'assistant', 'r1'), message('m3', 'user', 'q1'), message('m4', 'assistant', 'r2')]),
    );
    expect(filled.versioned).toBe(false);
    const path = visiblePath(filled.tree);
    expect(path.map((s) => s.message.id)).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(path.every((s) => s.siblings.length === 1)).toBe(true);
  });

  it('reads events without parents as a linear transcript', () => {
    const v1 = log([
      said(message('m1', 'user', 'q')),
      said(message('m2', 'assistant', '', 'streaming')),
      delta('m2', 'r'),
      done('m2'),
      said(message('m3', 'user', 'q')),
      said(message('m4', 'assistant', '', 'streaming')),
    ]);
    const { state } = fold(v1);
    expect(state.tree.map((m) => m.parent_id)).toEqual([null, 'm1', 'm2', 'm3']);
    expect(ids(state)).toEqual(['m1', 'm2', 'm3', 'm4']);
  });
});

describe('creation order', () => {
  it('compares RFC 3339 times whatever their fraction digits and offsets', () => {
    expect(compareCreated('2025-01-01T00:00:02Z', '2025-01-01T00:00:02.5Z')).toBeLessThan(0);
    expect(compareCreated('2025-01-01T00:00:02.123456Z', '2025-01-01T00:00:02.123457Z')).toBeLessThan(0);
    expect(compareCreated('2025-01-01T00:00:02.1Z', '2025-01-01T00:00:02.100000000Z')).toBe(0);
    expect(compareCreated('2025-01-01T07:00:00+07:00', '2025-01-01T00:00:00.5Z')).toBeLessThan(0);
    expect(compareCreated('2025-01-01T09:00:00+07:00', '2025-01-01T01:00:00Z')).toBeGreaterThan(0);
    expect(compareCreated('garbage', '2025-01-01T01:00:00Z')).toBe(0);
  });

  it('merges the active path and the branches, the path first on a tie and its newest message last', () => {
    const at = (id: string, time: string): Message => ({ ...message(id, 'user'), created_at: time });
    const path = [at('p1', '2025-01-01T00:00:01Z'), at('p2', '2025-01-01T00:00:03Z'), at('p3', '2025-01-01T00:00:04Z')];
    const branches = [at('b1', '2025-01-01T00:00:01Z'), at('b2', '2025-01-01T00:00:02.5Z'), at('b3', '2025-01-01T00:00:05Z')];
    expect(mergeByCreation(path, branches).map((m) => m.id)).toEqual(['p1', 'b1', 'b2', 'p2', 'b3', 'p3']);
    expect(mergeByCreation([], branches).map((m) => m.id)).toEqual(['b1', 'b2', 'b3']);
  });
});
