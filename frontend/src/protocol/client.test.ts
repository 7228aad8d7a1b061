import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatClient, FRAME_TOO_LARGE, type SocketLike, type TicketResult } from './client';
import { BOT_MSG, CONV, exchange, log, message, node, snapshot, treeSnapshot, USER_MSG } from './testing';
import { visiblePath } from './tree';
import type { ClientFrame, ServerFrame } from './types';

/** A socket the test plays the server for. */
class FakeSocket implements SocketLike {
  readyState = 1;
  readonly sent: ClientFrame[] = [];
  onmessage: SocketLike['onmessage'] = null;
  onclose: SocketLike['onclose'] = null;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(JSON.parse(data) as ClientFrame);
  }
  close() {
    this.readyState = 3;
  }
  receive(...frames: ServerFrame[]) {
    for (const frame of frames) this.onmessage?.(new MessageEvent('message', { data: JSON.stringify(frame) }));
  }
  /** The server (or the network) ends the connection. */
  drop(code = 1006) {
    this.readyState = 3;
    // Node has no CloseEvent; the client reads only `code`.
    this.onclose?.({ code } as CloseEvent);
  }
  ofType<T extends ClientFrame['type']>(type: T) {
    return this.sent.filter((f): f is Extract<ClientFrame, { type: T }> => f.type === type);
  }
}

const welcome = (node = 'n1'): ServerFrame => ({
  type: 'welcome',
  node_id: node,
  connection_id: 'c',
  user_id: 'u1',
  protocol: 1,
  heartbeat_ms: 10_000,
});

let sockets: FakeSocket[];
let dropToken: ReturnType<typeof vi.fn<(token: string) => void>>;
let client: ChatClient;

beforeEach(() => {
  vi.useFakeTimers();
  sockets = [];
  dropToken = vi.fn<(token: string) => void>();
  client = new ChatClient({
    url: (credential) => `ws://test/ws/chat?${'ticket' in credential ? `ticket=${credential.ticket}` : `token=${credential.token}`}`,
    getToken: async () => 'tok',
    dropToken,
    createSocket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    random: () => 0.5,
  });
});

afterEach(() => {
  client.stop();
  vi.useRealTimers();
});

/** Start (or wait for the reconnect), and answer with `welcome`. */
async function connect(node = 'n1'): Promise<FakeSocket> {
  const before = sockets.length;
  await vi.advanceTimersByTimeAsync(before === 0 ? 0 : 20_000);
  const socket = sockets.at(-1)!;
  expect(sockets.length).toBe(before + 1);
  socket.receive(welcome(node));
  return socket;
}

const reply = () => client.getState().conversations[CONV]?.tree.find((m) => m.id === BOT_MSG);

describe('ChatClient', () => {
  it('subscribes an open conversation, fills it from the snapshot and follows its events', async () => {
    client.follow(CONV);
    client.start();
    const socket = await connect();
    expect(client.getState().connection).toEqual({ status: 'connected', nodeId: 'n1' });
    const [sub] = socket.ofType('subscribe');
    expect(sub).toMatchObject({ conversation_id: CONV });
    expect(sub).not.toHaveProperty('since');

    const log = exchange(['one', ' two', ' three']);
    socket.receive(
      { type: 'subscribed', id: sub!.id, conversation_id: CONV, epoch: 'e1', seq: 3, recovered: false },
      snapshot(3, [message(USER_MSG, 'user', 'hello'), message(BOT_MSG, 'assistant', 'one', 'streaming')]),
      ...log.slice(3),
    );
    expect(reply()).toMatchObject({ content: 'one two three', status: 'complete' });
  });

  it('resumes every open conversation with since after a reconnect, without repeating text', async () => {
    const other = '00000000-0000-4000-8000-000000000002';
    client.follow(CONV);
    client.follow(other);
    client.start();
    let socket = await connect();
    const log = exchange(['a', 'b', 'c', 'd']);
    socket.receive(
      { type: 'subscribed', id: socket.ofType('subscribe')[0]!.id, conversation_id: CONV, epoch: 'e1', seq: 0, recovered: false },
      snapshot(0, []),
      ...log.slice(0, 4),
    );
    socket.drop(1012);
    expect(client.getState().connection.status).toBe('reconnecting');

    socket = await connect('n2');
    const subs = socket.ofType('subscribe');
    expect(subs.map((s) => s.conversation_id).sort()).toEqual([CONV, other].sort());
    expect(subs.find((s) => s.conversation_id === CONV)!.since).toEqual({ epoch: 'e1', seq: 4 });
    expect(subs.find((s) => s.conversation_id === other)!.since).toBeUndefined();

    // The server replays from seq 5; an overlap would be dropped too.
    socket.receive(
      { type: 'subscribed', id: subs[0]!.id, conversation_id: CONV, epoch: 'e1', seq: 6, recovered: true },
      ...log.slice(3),
    );
    expect(reply()).toMatchObject({ content: 'abcd', status: 'complete' });
    expect(client.getState().connection).toEqual({ status: 'connected', nodeId: 'n2' });
  });

  it('asks to resume from its last seq when it sees a gap', async () => {
    client.follow(CONV);
    client.start();
    const socket = await connect();
    const log = exchange(['a', 'b', 'c']);
    socket.receive(
      { type: 'subscribed', id: socket.ofType('subscribe')[0]!.id, conversation_id: CONV, epoch: 'e1', seq: 0, recovered: false },
      snapshot(0, []),
      log[0]!,
      log[1]!,
      log[3]!,
      log[4]!,
    );
    const resume = socket.ofType('subscribe')[1];
    expect(resume).toMatchObject({ conversation_id: CONV, since: { epoch: 'e1', seq: 2 } });
    expect(socket.ofType('subscribe')).toHaveLength(2);
  });

  it('resends an unacknowledged send with the same ids after a reconnect, and shows it until its message arrives', async () => {
    client.start();
    let socket = await connect();
    const requestId = client.send(null, 'hello', 'demo');
    const [first] = socket.ofType('send');
    expect(first).toMatchObject({ id: requestId, content: 'hello', model: 'demo' });
    expect(first).not.toHaveProperty('conversation_id');
    socket.drop();

    socket = await connect();
    const [again] = socket.ofType('send');
    expect(again).toEqual(first);
    expect(client.getState().pending).toHaveLength(1);

    // Events of a new conversation start at seq 1, possibly before the ack.
    const log = exchange(['hi']);
    socket.receive(log[0]!, {
      type: 'ack',
      id: requestId,
      conversation_id: CONV,
      user_message_id: USER_MSG,
      assistant_message_id: BOT_MSG,
    });
    expect(client.getState().created[requestId]).toBe(CONV);
    expect(client.getState().pending).toEqual([]);
    socket.receive(...log.slice(1));
    expect(reply()).toMatchObject({ content: 'hi', status: 'complete' });

    // The new conversation is followed: a reconnect resumes it.
    socket.drop();
    socket = await connect();
    expect(socket.ofType('subscribe')[0]).toMatchObject({ conversation_id: CONV, since: { epoch: 'e1', seq: 4 } });
  });

  it('hands back the text of a refused send in a notice', async () => {
    client.start();
    const socket = await connect();
    const requestId = client.send(CONV, 'too soon');
    socket.receive({ type: 'error', id: requestId, code: 'conflict', message: 'a reply is still streaming' });
    expect(client.getState().pending).toEqual([]);
    expect(client.getState().notices).toMatchObject([{ code: 'conflict', refusedContent: 'too soon' }]);
  });

  it('does not send a frame over 65,536 bytes: the text comes back in a notice, nothing is resent', async () => {
    client.start();
    let socket = await connect();
    const text = '流'.repeat(25_000); // 25,000 characters, 75,000 bytes
    client.send(CONV, text);
    expect(socket.ofType('send')).toEqual([]);
    expect(client.getState().pending).toEqual([]);
    expect(client.getState().notices).toMatchObject([{ code: FRAME_TOO_LARGE, refusedContent: text }]);
    socket.drop();
    socket = await connect();
    expect(socket.ofType('send')).toEqual([]);
  });

  it('drops the frame a 1009 close refused instead of resending it, and sends nothing that large again', async () => {
    client.start();
    let socket = await connect();
    client.send(CONV, 'small one');
    const big = 'x'.repeat(20_000);
    client.send(CONV, big);
    expect(socket.ofType('send').map((f) => f.content)).toEqual(['small one', big]);
    socket.drop(1009);
    expect(client.getState().notices).toMatchObject([{ code: FRAME_TOO_LARGE, refusedContent: big }]);
    expect(client.getState().pending.map((p) => p.content)).toEqual(['small one']);

    // The reconnect replays what is unanswered, except the refused frame: no loop.
    socket = await connect();
    expect(socket.ofType('send').map((f) => f.content)).toEqual(['small one']);
    // The node's limit is lower than the contract's: a frame as large is refused before sending.
    client.send(CONV, 'y'.repeat(20_000));
    expect(socket.ofType('send')).toHaveLength(1);
    expect(client.getState().notices).toHaveLength(2);
    client.send(CONV, 'y'.repeat(10_000));
    expect(socket.ofType('send')).toHaveLength(2);
  });

  it('reconnects as usual after a 1009 close with no send waiting', async () => {
    client.start();
    const socket = await connect();
    socket.drop(1009);
    expect(client.getState().notices).toEqual([]);
    await connect();
  });

  it('forgets its token when the server refuses it, and reconnects with backoff', async () => {
    client.start();
    const socket = await connect();
    socket.drop(1008);
    expect(dropToken).toHaveBeenCalledExactlyOnceWith('tok');
    const state = client.getState().connection;
    expect(state.status).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(200);
    expect(sockets).toHaveLength(1); // the first retry waits between 250 and 500 ms
    await vi.advanceTimersByTimeAsync(300);
    expect(sockets).toHaveLength(2);
  });

  it('pings every half heartbeat, and reconnects when the link goes silent', async () => {
    client.start();
    const socket = await connect();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(socket.ofType('ping')).toHaveLength(1);
    socket.receive({ type: 'pong' });
    // Three ping periods without a frame: the client gives the socket up.
    await vi.advanceTimersByTimeAsync(20_000);
    expect(client.getState().connection.status).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(sockets).toHaveLength(2);
  });

  it('forgets a conversation the server deleted', async () => {
    client.follow(CONV);
    client.start();
    const socket = await connect();
    socket.receive(
      { type: 'subscribed', id: socket.ofType('subscribe')[0]!.id, conversation_id: CONV, epoch: 'e1', seq: 0, recovered: false },
      snapshot(0, []),
      { type: 'unsubscribed', conversation_id: CONV },
    );
    expect(client.getState().conversations[CONV]).toBeUndefined();
  });
  it('drops a conversation that no longer exists, and says so', async () => {
    client.follow(CONV);
    client.start();
    const socket = await connect();
    const [sub] = socket.ofType('subscribe');
    socket.receive({ type: 'error', id: sub!.id, code: 'not_found', message: 'conversation not found' });
    const state = client.getState();
    expect(state.conversations[CONV]).toBeUndefined();
    expect(state.removed).toContain(CONV);
    expect(state.notices).toMatchObject([{ code: 'not_found' }]);
    expect(dropToken).not.toHaveBeenCalled();
  });

  it('keeps a conversation the server cannot serve for now, and asks again with backoff', async () => {
    client.follow(CONV);
    client.start();
    const socket = await connect();
    const refuse = () => {
      const sub = socket.ofType('subscribe').at(-1)!;
      socket.receive({ type: 'error', id: sub.id, code: 'unavailable', message: 'store recovering' });
    };
    refuse();
    expect(client.getState().conversations[CONV]).toBeDefined();
    expect(client.getState().removed).toEqual([]);
    expect(client.getState().unavailable[CONV]).toBeGreaterThan(0);
    expect(client.getState().notices).toEqual([]); // the open conversation shows it instead

    // With random 0.5: 750 ms, then 1500 ms, then 3000 ms.
    await vi.advanceTimersByTimeAsync(749);
    expect(socket.ofType('subscribe')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(socket.ofType('subscribe')).toHaveLength(2);
    refuse();
    await vi.advanceTimersByTimeAsync(1499);
    expect(socket.ofType('subscribe')).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(socket.ofType('subscribe')).toHaveLength(3);
    refuse();
    await vi.advanceTimersByTimeAsync(3000);
    const last = socket.ofType('subscribe');
    expect(last).toHaveLength(4);

    socket.receive(
      { type: 'subscribed', id: last.at(-1)!.id, conversation_id: CONV, epoch: 'e2', seq: 0, recovered: false },
      snapshot(0, [], 'e2'),
    );
    expect(client.getState().unavailable).toEqual({});
    // Served again: no more retries.
    await vi.advanceTimersByTimeAsync(60_000);
    expect(socket.ofType('subscribe')).toHaveLength(4);
  });

  it('stops retrying a conversation the UI closed', async () => {
    client.follow(CONV);
    client.start();
    const socket = await connect();
    const [sub] = socket.ofType('subscribe');
    socket.receive({ type: 'error', id: sub!.id, code: 'unavailable', message: 'later' });
    client.unfollow(CONV);
    expect(client.getState().unavailable).toEqual({});
    await vi.advanceTimersByTimeAsync(60_000);
    expect(socket.ofType('subscribe')).toHaveLength(1);
  });
});

describe('ChatClient with WebSocket tickets', () => {
  let tickets: TicketResult[];
  let getTicket: ReturnType<typeof vi.fn<(token: string) => Promise<TicketResult>>>;
  let tokens: string[];

  beforeEach(() => {
    client.stop();
    tickets = [];
    tokens = ['tok'];
    getTicket = vi.fn(async () => tickets.shift() ?? { kind: 'failed' });
    client = new ChatClient({
      url: (credential) => `ws://test/ws/chat?${'ticket' in credential ? `ticket=${credential.ticket}` : `token=${credential.token}`}`,
      getToken: async () => tokens[0]!,
      getTicket,
      dropToken: (token) => {
        dropToken(token);
        // The next getToken hands out a renewed token.
        if (tokens[0] === token) tokens.shift();
      },
      createSocket: (url) => {
        const socket = new FakeSocket(url);
        sockets.push(socket);
        return socket;
      },
      random: () => 0.5,
    });
  });

  it('opens every socket with a fresh ticket, never with the token', async () => {
    tickets.push({ kind: 'ticket', ticket: 't-1' }, { kind: 'ticket', ticket: 't-2' });
    client.start();
    let socket = await connect();
    expect(socket.url).toBe('ws://test/ws/chat?ticket=t-1');
    expect(getTicket).toHaveBeenLastCalledWith('tok');

    socket.drop(1012);
    socket = await connect();
    expect(socket.url).toBe('ws://test/ws/chat?ticket=t-2');
    expect(getTicket).toHaveBeenCalledTimes(2);
    expect(sockets.every((s) => !s.url.includes('token'))).toBe(true);
  });

  it('falls back to the token on a node without the ticket route, and asks again next time', async () => {
    tickets.push({ kind: 'unsupported' }, { kind: 'ticket', ticket: 't-1' });
    client.start();
    let socket = await connect();
    expect(socket.url).toBe('ws://test/ws/chat?token=tok');
    expect(client.getState().connection).toEqual({ status: 'connected', nodeId: 'n1' });

    // After a rolling upgrade the next node may have the route.
    socket.drop(1012);
    socket = await connect('n2');
    expect(socket.url).toBe('ws://test/ws/chat?ticket=t-1');
  });

  it('renews a token the ticket request refused, and reconnects with backoff', async () => {
    tokens = ['old', 'renewed'];
    tickets.push({ kind: 'refused' }, { kind: 'ticket', ticket: 't-1' });
    client.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(sockets).toHaveLength(0);
    expect(dropToken).toHaveBeenCalledExactlyOnceWith('old');
    expect(client.getState().connection.status).toBe('reconnecting');

    // With random 0.5 the first retry waits 375 ms.
    await vi.advanceTimersByTimeAsync(374);
    expect(sockets).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(getTicket).toHaveBeenLastCalledWith('renewed');
    expect(sockets.map((s) => s.url)).toEqual(['ws://test/ws/chat?ticket=t-1']);
  });

  it('retries a failed ticket request with the same backoff as a failed connection', async () => {
    tickets.push({ kind: 'failed' }, { kind: 'failed' }, { kind: 'ticket', ticket: 't-1' });
    client.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(client.getState().connection.status).toBe('reconnecting');
    // 375 ms, then 750 ms (random 0.5): no socket, and no fallback to the token meanwhile.
    await vi.advanceTimersByTimeAsync(375);
    expect(getTicket).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(749);
    expect(getTicket).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(getTicket).toHaveBeenCalledTimes(3);
    expect(sockets.map((s) => s.url)).toEqual(['ws://test/ws/chat?ticket=t-1']);
    expect(dropToken).not.toHaveBeenCalled();
  });

  it('keeps the token when a socket opened with a ticket is refused: the next ticket request checks it', async () => {
    tickets.push({ kind: 'ticket', ticket: 't-1' }, { kind: 'ticket', ticket: 't-2' });
    client.start();
    await vi.advanceTimersByTimeAsync(0);
    const refused = sockets[0]!;
    refused.receive({ type: 'error', code: 'unauthorized', message: 'This ticket is not valid.' });
    refused.drop(1008);
    expect(dropToken).not.toHaveBeenCalled();
    const socket = await connect();
    expect(socket.url).toBe('ws://test/ws/chat?ticket=t-2');
    expect(getTicket).toHaveBeenLastCalledWith('tok');
  });

  it('drops the token when a socket opened with the token itself is refused', async () => {
    tickets.push({ kind: 'unsupported' });
    client.start();
    await vi.advanceTimersByTimeAsync(0);
    sockets[0]!.drop(1008);
    expect(dropToken).toHaveBeenCalledExactlyOnceWith('tok');
  });
});

describe('ChatClient: versions and branches (1.2)', () => {
  const U1 = '00000000-0000-4000-8000-0000000000c1';
  const A1 = '00000000-0000-4000-8000-0000000000c2';
  const A2 = '00000000-0000-4000-8000-0000000000c3';
  const U1B = '00000000-0000-4000-8000-0000000000c4';
  const A3 = '00000000-0000-4000-8000-0000000000c5';

  /** A followed conversation holding one exchange: U1 → A1 (`status`). */
  async function opened(status: 'complete' | 'cancelled' = 'complete') {
    client.follow(CONV);
    client.start();
    const socket = await connect();
    const sub = socket.ofType('subscribe')[0]!;
    socket.receive(
      { type: 'subscribed', id: sub.id, conversation_id: CONV, epoch: 'e1', seq: 4, recovered: false },
      treeSnapshot(4, [node(U1, 'user', null, 1, 'hello'), node(A1, 'assistant', U1, 2, 'first', status)], []),
    );
    return socket;
  }
  const state = () => client.getState();
  const shown = () => visiblePath(state().conversations[CONV]!.tree, state().choices[CONV]).map((s) => s.message.id);

  it('asks for a regenerated reply, resends it unchanged after a reconnect, and shows the new version', async () => {
    let socket = await opened();
    const requestId = client.regenerate(CONV, A1, 'demo');
    const [first] = socket.ofType('regenerate');
    expect(first).toEqual({ type: 'regenerate', id: requestId, message_id: A1, client_msg_id: expect.any(String), model: 'demo' });
    expect(first!.client_msg_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(state().versions).toMatchObject([{ requestId, conversationId: CONV, kind: 'regenerate', messageId: A1 }]);

    // The ack was lost with the connection: the same frame again, so the server appends nothing twice.
    socket.drop();
    socket = await connect();
    expect(socket.ofType('regenerate')).toEqual([first]);
    const sub = socket.ofType('subscribe')[0]!;
    expect(sub.since).toEqual({ epoch: 'e1', seq: 4 });
    socket.receive(
      { type: 'subscribed', id: sub.id, conversation_id: CONV, epoch: 'e1', seq: 5, recovered: true },
      ...log([{ kind: 'message', message: node(A2, 'assistant', U1, 3, '', 'streaming') }], 5),
      { type: 'ack', id: requestId, conversation_id: CONV, user_message_id: U1, assistant_message_id: A2 },
    );
    expect(state().versions).toEqual([]);
    expect(shown()).toEqual([U1, A2]);
    socket.drop();
    socket = await connect();
    expect(socket.ofType('regenerate')).toEqual([]);
  });

  it('keeps a version asked for until its reply arrives, whichever comes first', async () => {
    const socket = await opened();
    const requestId = client.regenerate(CONV, A1);
    socket.receive({ type: 'ack', id: requestId, conversation_id: CONV, user_message_id: U1, assistant_message_id: A2 });
    expect(state().versions).toMatchObject([{ requestId, assistantMessageId: A2 }]);
    socket.receive(...log([{ kind: 'message', message: node(A2, 'assistant', U1, 3, '', 'streaming') }], 5));
    expect(state().versions).toEqual([]);
  });

  it('sends an edit with its text and shows the edited question with its reply', async () => {
    const socket = await opened();
    const requestId = client.edit(CONV, U1, 'hello again');
    expect(socket.ofType('edit')).toEqual([
      { type: 'edit', id: requestId, message_id: U1, content: 'hello again', client_msg_id: expect.any(String) },
    ]);
    expect(state().versions).toMatchObject([{ kind: 'edit', messageId: U1, content: 'hello again' }]);
    socket.receive(
      { type: 'ack', id: requestId, conversation_id: CONV, user_message_id: U1B, assistant_message_id: A3 },
      ...log(
        [
          { kind: 'message', message: node(U1B, 'user', null, 3, 'hello again') },
          { kind: 'message', message: node(A3, 'assistant', U1B, 4, '', 'streaming') },
        ],
        5,
      ),
    );
    expect(state().versions).toEqual([]);
    expect(shown()).toEqual([U1B, A3]);

    // The reader goes back to the first version, and forward again.
    client.showVersion(CONV, U1);
    expect(shown()).toEqual([U1, A1]);
    client.showVersion(CONV, U1B);
    expect(shown()).toEqual([U1B, A3]);
  });

  it('continues a stopped reply with its own frame', async () => {
    const socket = await opened('cancelled');
    const requestId = client.continueReply(CONV, A1);
    expect(socket.ofType('continue')).toEqual([
      { type: 'continue', id: requestId, message_id: A1, client_msg_id: expect.any(String) },
    ]);
  });

  it('says why a version was refused, and forgets it', async () => {
    const socket = await opened();
    const requestId = client.regenerate(CONV, A1);
    socket.receive({ type: 'error', id: requestId, code: 'conflict', message: 'a reply is still streaming' });
    expect(state().versions).toEqual([]);
    expect(state().notices).toMatchObject([{ code: 'conflict' }]);
    expect(state().notices[0]).not.toHaveProperty('refusedContent');
    socket.drop();
    expect(((await connect()) as FakeSocket).ofType('regenerate')).toEqual([]);
  });

  it('does not send an edit over the frame limit', async () => {
    const socket = await opened();
    client.edit(CONV, U1, '流'.repeat(25_000));
    expect(socket.ofType('edit')).toEqual([]);
    expect(state().versions).toEqual([]);
    expect(state().notices).toMatchObject([{ code: 'too_large' }]);
  });

  it('sends a new question from another branch with parent_id', async () => {
    const socket = await opened();
    client.send(CONV, 'from here', undefined, A1);
    client.send(CONV, 'from the newest');
    client.send(null, 'a new chat', undefined, A1);
    const sends = socket.ofType('send');
    expect(sends[0]).toMatchObject({ conversation_id: CONV, content: 'from here', parent_id: A1 });
    expect(sends[1]).not.toHaveProperty('parent_id');
    expect(sends[2]).not.toHaveProperty('parent_id');
  });

  it('keeps the reader’s choice across a reconnect answered with a snapshot of a new epoch', async () => {
    let socket = await opened();
    socket.receive(...log([{ kind: 'message', message: node(A2, 'assistant', U1, 3, 'second') }], 5));
    client.showVersion(CONV, A1);
    expect(shown()).toEqual([U1, A1]);
    socket.drop(1012);
    socket = await connect();
    const sub = socket.ofType('subscribe')[0]!;
    expect(sub.since).toEqual({ epoch: 'e1', seq: 5 });
    socket.receive(
      { type: 'subscribed', id: sub.id, conversation_id: CONV, epoch: 'e2', seq: 5, recovered: false },
      treeSnapshot(
        5,
        [node(U1, 'user', null, 1, 'hello'), node(A2, 'assistant', U1, 3, 'second')],
        [node(A1, 'assistant', U1, 2, 'first')],
        'e2',
      ),
    );
    expect(state().conversations[CONV]).toMatchObject({ epoch: 'e2', seq: 5 });
    expect(shown()).toEqual([U1, A1]);
  });

  it('reveals a message on another branch', async () => {
    const socket = await opened();
    socket.receive(...log([{ kind: 'message', message: node(A2, 'assistant', U1, 3, '', 'streaming') }], 5));
    expect(shown()).toEqual([U1, A2]);
    client.revealMessage(CONV, A1);
    expect(shown()).toEqual([U1, A1]);
    client.revealMessage(CONV, 'unknown');
    expect(shown()).toEqual([U1, A1]);
  });
});
