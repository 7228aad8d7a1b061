import { describe, expect, it } from 'vitest';
import { applyEvent, applySnapshot, applySubscribed, emptyConversation, type ConversationState } from './reducer';
import { BOT_MSG, CONV, event, exchange, message, snapshot, USER_MSG } from './testing';
import type { EventFrame } from './types';

/** Apply frames one by one, collecting the resubscribe requests they cause. */
function run(frames: EventFrame[], start?: ConversationState) {
  let state = start;
  const resubscribes: unknown[] = [];
  for (const frame of frames) {
    const step = applyEvent(state, frame);
    state = step.state;
    if (step.resubscribe) resubscribes.push(step.resubscribe);
  }
  return { state, resubscribes };
}

const reply = (state: ConversationState | undefined) => state?.tree.find((m) => m.id === BOT_MSG);

describe('applying events by seq', () => {
  it('folds a whole exchange in order, starting at seq 1 without a subscription', () => {
    const { state, resubscribes } = run(exchange(['Hel', 'lo', ' there']));
    expect(resubscribes).toEqual([]);
    expect(state?.epoch).toBe('e1');
    expect(state?.seq).toBe(6);
    expect(state?.tree.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(reply(state)).toMatchObject({ content: 'Hello there', status: 'complete' });
  });

  it('ignores events it already applied, however often they come', () => {
    const log = exchange(['a', 'b', 'c']);
    const replayed = [log[0]!, log[1]!, log[2]!, log[2]!, log[1]!, log[3]!, log[2]!, log[4]!, log[3]!, log[5]!];
    const { state, resubscribes } = run(replayed);
    expect(resubscribes).toEqual([]);
    expect(reply(state)?.content).toBe('abc');
    expect(state?.tree).toHaveLength(2);
  });

  it('keeps the text of a cancelled or failed reply', () => {
    const [user, start, delta] = exchange(['partial']);
    const cancelled = run([user!, start!, delta!, event(4, { kind: 'cancelled', message_id: BOT_MSG })]);
    expect(reply(cancelled.state)).toMatchObject({ content: 'partial', status: 'cancelled' });
    const failed = run([user!, start!, delta!, event(4, { kind: 'failed', message_id: BOT_MSG, error: 'upstream' })]);
    expect(reply(failed.state)).toMatchObject({ content: 'partial', status: 'failed', error: 'upstream' });
  });
});

describe('gaps', () => {
  it('asks once to resume from the last applied seq, and still applies what follows on', () => {
    const log = exchange(['a', 'b', 'c', 'd']);
    const { state, resubscribes } = run([log[0]!, log[1]!, log[2]!, log[4]!, log[5]!]);
    expect(resubscribes).toEqual([{ since: { epoch: 'e1', seq: 3 } }]);
    expect(state).toMatchObject({ seq: 3, sync: 'resyncing' });

    // The resumed subscription replays from seq 4; the duplicates it overlaps are dropped.
    const resumed = applySubscribed(state, { type: 'subscribed', conversation_id: CONV, epoch: 'e1', seq: 5, recovered: true });
    const after = run(log.slice(3), resumed);
    expect(after.resubscribes).toEqual([]);
    expect(reply(after.state)).toMatchObject({ content: 'abcd', status: 'complete' });
  });

  it('asks for a snapshot when the first event it sees of an unknown conversation is not seq 1', () => {
    const step = applyEvent(undefined, exchange(['a'])[2]!);
    expect(step).toEqual({ state: undefined, resubscribe: {} });
  });

  it('treats an event of another epoch as a gap', () => {
    const { state } = run(exchange(['a']).slice(0, 3));
    const step = applyEvent(state, event(4, { kind: 'delta', message_id: BOT_MSG, text: 'x' }, 'e2'));
    expect(step.resubscribe).toEqual({ since: { epoch: 'e1', seq: 3 } });
    expect(reply(step.state)?.content).toBe('a');
  });
});

describe('snapshots', () => {
  it('replace the state, and events continue after their seq', () => {
    const log = exchange(['a', 'b', 'c']);
    const { state: stale } = run(log.slice(0, 2));
    const announced = applySubscribed(stale, { type: 'subscribed', conversation_id: CONV, epoch: 'e1', seq: 4, recovered: false });
    expect(announced.sync).toBe('awaiting_snapshot');

    // Events in flight before the snapshot are covered by it.
    expect(applyEvent(announced, log[2]!)).toEqual({ state: announced });

    const filled = applySnapshot(
      snapshot(4, [message(USER_MSG, 'user', 'hello'), message(BOT_MSG, 'assistant', 'ab', 'streaming')]),
    );
    const { state, resubscribes } = run(log, filled);
    expect(resubscribes).toEqual([]);
    expect(state).toMatchObject({ seq: 6, sync: 'live' });
    expect(reply(state)).toMatchObject({ content: 'abc', status: 'complete' });
  });

  it('of a new epoch replace everything held in the old one', () => {
    const { state: old } = run(exchange(['old']));
    const filled = applySnapshot(snapshot(2, [message(USER_MSG, 'user', 'hello'), message(BOT_MSG, 'assistant', 'new')], 'e2'));
    expect(filled).toMatchObject({ epoch: 'e2', seq: 2 });
    const next = applyEvent(filled, event(3, { kind: 'delta', message_id: BOT_MSG, text: '!' }, 'e2'));
    expect(reply(next.state)?.content).toBe('new!');
    expect(reply(old)?.content).toBe('old');
  });

  it('of an empty conversation start at seq 0', () => {
    const filled = applySnapshot(snapshot(0, []));
    const { state } = run(exchange(['x']), filled);
    expect(reply(state)?.content).toBe('x');
  });
});

describe('an empty state waiting for its first events', () => {
  it('adopts the epoch of seq 1', () => {
    const { state } = run(exchange(['z'], 'e9'), emptyConversation('resyncing'));
    expect(state).toMatchObject({ epoch: 'e9', seq: 4 });
  });
});
