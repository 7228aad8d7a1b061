// The WebSocket client: one socket at a time, reconnected with backoff, every
// followed conversation resumed with `since`, unanswered sends and cancels
// replayed (the server deduplicates them by id). The UI reads `getState()`
// and calls the methods below; it never sees a frame.

import { frameBytes, MAX_FRAME_BYTES } from '../lib/limits';
import { backoffDelay } from './backoff';
import { uuid } from './ids';
import {
  applyEvent,
  applySnapshot,
  applySubscribed,
  emptyConversation,
  sinceOf,
  type ConversationState,
} from './reducer';
import { choose, reveal, type Choices } from './tree';
import {
  CLOSE_BAD_TOKEN,
  CLOSE_TOO_BIG,
  type AckFrame,
  type ClientFrame,
  type ErrorCode,
  type ErrorFrame,
  type ServerFrame,
  type Since,
  type WelcomeFrame,
} from './types';

export type ConnectionState =
  | { status: 'connecting' }
  | { status: 'connected'; nodeId: string }
  | { status: 'reconnecting'; retryAt: number }
  | { status: 'offline' };

/** A message the user sent that the conversation does not show yet. */
export interface PendingSend {
  requestId: string;
  conversationId: string | null;
  content: string;
  /** Known once acknowledged; the entry leaves when this message appears. */
  userMessageId: string | null;
}

/** A new version asked for (1.2): a reply regenerated or continued, a question edited. */
export interface PendingVersion {
  requestId: string;
  conversationId: string;
  kind: 'regenerate' | 'edit' | 'continue';
  /** The message the request is about: the reply regenerated or continued, the question edited. */
  messageId: string;
  /** An edit's new text, shown until its message arrives. */
  content?: string;
  /** Known once acknowledged; the entry leaves when this message appears. */
  assistantMessageId: string | null;
}

/**
 * The code of the notice for a send that was not sent because its frame is
 * over the size limit: found before sending, or refused by the server (close
 * 1009). The notice carries the text back (`refusedContent`).
 */
export const FRAME_TOO_LARGE = 'frame_too_large';

export interface Notice {
  id: string;
  /** An `error` frame's code, or the code of an HTTP error the UI reports. */
  code: string;
  message: string;
  /** The text of a send the server refused, so the UI can hand it back. */
  refusedContent?: string;
}

export interface ClientState {
  connection: ConnectionState;
  userId: string | null;
  conversations: Readonly<Record<string, ConversationState>>;
  pending: readonly PendingSend[];
  /** New versions asked for and not shown yet. */
  versions: readonly PendingVersion[];
  /** Conversation → the versions the reader picked (‹ 2/3 ›); see `tree.ts`. */
  choices: Readonly<Record<string, Choices>>;
  /** Assistant messages with a cancel on its way. */
  cancelling: readonly string[];
  /** Send request id → the conversation that send created. */
  created: Readonly<Record<string, string>>;
  notices: readonly Notice[];
  /** Conversations dropped because they were deleted or are not ours. */
  removed: readonly string[];
  /**
   * Conversations the server could not serve for now (`unavailable` and the
   * like): conversation → when the client asks again. Never dropped for it.
   */
  unavailable: Readonly<Record<string, number>>;
  /** Grows whenever the server's list of conversations may have changed. */
  listVersion: number;
}

/** The part of a browser WebSocket the client uses (tests pass a fake). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
}

/** What the socket is opened with: a single-use ticket, or the token itself. */
export type SocketCredential = { ticket: string } | { token: string };

/** The answer to a ticket request (`POST /api/ws-ticket`). */
export type TicketResult =
  | { kind: 'ticket'; ticket: string }
  /** The node has no ticket route (404: older than contract 1.1): open the socket with the token. */
  | { kind: 'unsupported' }
  /** The token was refused (401). */
  | { kind: 'refused' }
  /** Anything else (network, 429, 5xx): try again with backoff. */
  | { kind: 'failed' };

export interface ClientOptions {
  /** The socket address for a credential. */
  url(credential: SocketCredential): string;
  getToken(): Promise<string>;
  /**
   * A fresh ticket for `token`, asked for before every (re)connection so that
   * the token stays out of the socket's URL. Absent: the token is used.
   */
  getTicket?(token: string): Promise<TicketResult>;
  /** The server refused this token: forget it so the next `getToken` renews it. */
  dropToken(token: string): void;
  createSocket(url: string): SocketLike;
  isOnline?(): boolean;
  random?(): number;
  /** The largest frame the server takes (the contract's 65,536 bytes unless told otherwise). */
  maxFrameBytes?: number;
}

type SendFrame = Extract<ClientFrame, { type: 'send' }>;
type CancelFrame = Extract<ClientFrame, { type: 'cancel' }>;
type VersionFrame = Extract<ClientFrame, { type: 'regenerate' | 'edit' | 'continue' }>;
/** Frames replayed after a reconnect until answered; the server deduplicates them by `client_msg_id`. */
type OutboxFrame = SendFrame | CancelFrame | VersionFrame;
/** Frames that carry a text of the user's, which may be too large. */
type TextFrame = Extract<OutboxFrame, { content: string }>;

const OPEN = 1;
/** Close code for a link that went silent; browsers allow 4000–4999 from clients. */
const CLOSE_SILENT = 4000;
/** First wait before subscribing again after the server answered `unavailable`; doubles… */
const RESUBSCRIBE_BASE_MS = 1000;
/** …up to this. */
const RESUBSCRIBE_CAP_MS = 30_000;

const initialState = (): ClientState => ({
  connection: { status: 'connecting' },
  userId: null,
  conversations: {},
  pending: [],
  versions: [],
  choices: {},
  cancelling: [],
  created: {},
  notices: [],
  removed: [],
  unavailable: {},
  listVersion: 0,
});

export class ChatClient {
  private state = initialState();
  private readonly listeners = new Set<() => void>();
  private socket: SocketLike | null = null;
  /** True between `welcome` and the socket's end: frames may be sent. */
  private ready = false;
  private attempt = 0;
  /** The token the current socket was opened with, or its ticket was asked for. */
  private token = '';
  /** Whether the current socket was opened with `token` itself rather than a ticket. */
  private openedWithToken = false;
  private heartbeatMs = 25_000;
  private lastHeard = 0;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  /** Conversations the UI has open: subscribed again after every reconnect. */
  private readonly followed = new Set<string>();
  /** Subscribe request id → conversation, to route its `error`. */
  private readonly subscribeRequests = new Map<string, string>();
  /** Sends and cancels not answered yet, replayed in order after a reconnect. */
  private readonly outbox = new Map<string, OutboxFrame>();
  /** Conversation → subscribes refused in a row as unavailable, for the backoff. */
  private readonly refusals = new Map<string, number>();
  /** Conversation → its pending subscribe retry. */
  private readonly retryTimers = new Map<string, ReturnType<typeof setTimeout>>();
  /** Frames larger than this are not sent; lowered when the server refuses a smaller one (1009). */
  private maxFrameBytes: number;

  constructor(private readonly options: ClientOptions) {
    this.maxFrameBytes = options.maxFrameBytes ?? MAX_FRAME_BYTES;
  }

  // ---- store interface (React's useSyncExternalStore) ----

  getState = (): ClientState => this.state;

  onChange = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  // ---- lifecycle ----

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    this.dropSocket()?.close(1000, 'client stopped');
  }

  /** Skip the backoff wait (the network came back, or the user asked). */
  retryNow(): void {
    if (this.socket || this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.attempt = 0;
    void this.connect();
  }

  /** The browser lost its network: the socket is dead even if no close came yet. */
  wentOffline(): void {
    if (this.stopped) return;
    this.dropSocket()?.close(1000, 'offline');
    this.scheduleReconnect();
  }

  // ---- what the UI asks for ----

  follow(conversationId: string): void {
    if (this.followed.has(conversationId)) return;
    this.followed.add(conversationId);
    if (this.ready) this.subscribe(conversationId);
    else if (!this.state.conversations[conversationId]) {
      this.setConversation(conversationId, emptyConversation('resyncing'));
    }
  }

  /** Stop receiving a conversation; what we hold stays, to resume from later. */
  unfollow(conversationId: string): void {
    if (!this.followed.delete(conversationId)) return;
    this.stopRetrying(conversationId);
    this.transmit({ type: 'unsubscribe', id: uuid(), conversation_id: conversationId });
  }

  /** The conversation was deleted: drop everything about it. */
  forget(conversationId: string): void {
    this.unfollow(conversationId);
    this.dropConversation(conversationId);
  }

  /**
   * Send a message; `conversationId` null starts a new conversation.
   * `parentId`: the message it follows, when that is not the conversation's
   * newest (the reader is on another branch). Returns the request id.
   */
  send(conversationId: string | null, content: string, model?: string, parentId?: string): string {
    const frame: SendFrame = { type: 'send', id: uuid(), content, client_msg_id: uuid() };
    if (conversationId) frame.conversation_id = conversationId;
    if (model) frame.model = model;
    if (conversationId && parentId) frame.parent_id = parentId;
    // The server would close the socket (1009) and the resend after the
    // reconnect would meet the same fate: refuse it here, text handed back.
    if (frameBytes(frame) > this.maxFrameBytes) {
      this.refuseTooLarge(frame);
      return frame.id;
    }
    this.outbox.set(frame.id, frame);
    this.update({
      pending: [
        ...this.state.pending,
        { requestId: frame.id, conversationId, content, userMessageId: null },
      ],
    });
    this.transmit(frame);
    return frame.id;
  }

  /** A new reply beside `messageId` (a reply), or to it (a question). Returns the request id. */
  regenerate(conversationId: string, messageId: string, model?: string): string {
    return this.askVersion(conversationId, { type: 'regenerate', id: uuid(), message_id: messageId, client_msg_id: uuid() }, model);
  }

  /** A new version of the question `messageId`, and its reply. Returns the request id. */
  edit(conversationId: string, messageId: string, content: string, model?: string): string {
    return this.askVersion(conversationId, { type: 'edit', id: uuid(), message_id: messageId, content, client_msg_id: uuid() }, model);
  }

  /** The reply `messageId`, which ended early, continued as a new version. Returns the request id. */
  continueReply(conversationId: string, messageId: string, model?: string): string {
    return this.askVersion(conversationId, { type: 'continue', id: uuid(), message_id: messageId, client_msg_id: uuid() }, model);
  }

  /** Show the version `messageId` at its level (‹ 2/3 ›). */
  showVersion(conversationId: string, messageId: string): void {
    const tree = this.conversation(conversationId)?.tree ?? [];
    this.setChoices(conversationId, choose(tree, this.state.choices[conversationId] ?? {}, messageId));
  }

  /** Show the branch that holds `messageId` (a search result on another branch). */
  revealMessage(conversationId: string, messageId: string): void {
    const tree = this.conversation(conversationId)?.tree ?? [];
    if (!tree.some((m) => m.id === messageId)) return;
    this.setChoices(conversationId, reveal(tree, this.state.choices[conversationId] ?? {}, messageId));
  }

  private setChoices(conversationId: string, choices: Choices): void {
    if (this.state.choices[conversationId] === choices) return;
    this.update({ choices: { ...this.state.choices, [conversationId]: choices } });
  }

  private askVersion(conversationId: string, frame: VersionFrame, model?: string): string {
    if (model) frame.model = model;
    if (frame.type === 'edit' && frameBytes(frame) > this.maxFrameBytes) {
      this.refuseTooLarge(frame);
      return frame.id;
    }
    this.outbox.set(frame.id, frame);
    const version: PendingVersion = {
      requestId: frame.id,
      conversationId,
      kind: frame.type,
      messageId: frame.message_id,
      assistantMessageId: null,
    };
    if (frame.type === 'edit') version.content = frame.content;
    this.update({ versions: [...this.state.versions, version] });
    this.transmit(frame);
    return frame.id;
  }

  cancel(messageId: string): void {
    if (this.state.cancelling.includes(messageId)) return;
    const frame: CancelFrame = { type: 'cancel', id: uuid(), message_id: messageId };
    this.outbox.set(frame.id, frame);
    this.update({ cancelling: [...this.state.cancelling, messageId] });
    this.transmit(frame);
  }

  /** Show a problem outside the socket (an HTTP call) the same way as `error` frames. */
  notify(code: string, message: string): void {
    this.update({ notices: [...this.state.notices, { id: uuid(), code, message }] });
  }

  dismissNotice(id: string): void {
    this.update({ notices: this.state.notices.filter((n) => n.id !== id) });
  }

  // ---- the socket ----

  private async connect(): Promise<void> {
    this.reconnectTimer = undefined;
    if (this.stopped) return;
    if (this.options.isOnline && !this.options.isOnline()) return this.scheduleReconnect();
    let token: string;
    try {
      token = await this.options.getToken();
    } catch {
      return this.scheduleReconnect();
    }
    if (this.stopped || this.socket) return;
    let credential: SocketCredential = { token };
    if (this.options.getTicket) {
      // A ticket is single-use and short-lived: a new one for every attempt.
      const answer = await this.options.getTicket(token);
      if (answer.kind === 'refused') this.options.dropToken(token);
      if (answer.kind === 'refused' || answer.kind === 'failed') return this.scheduleReconnect();
      if (answer.kind === 'ticket') credential = { ticket: answer.ticket };
      if (this.stopped || this.socket) return;
    }
    this.token = token;
    this.openedWithToken = 'token' in credential;
    const socket = this.options.createSocket(this.options.url(credential));
    this.socket = socket;
    socket.onmessage = (event) => {
      if (this.socket !== socket || typeof event.data !== 'string') return;
      let frame: ServerFrame;
      try {
        frame = JSON.parse(event.data) as ServerFrame;
      } catch {
        return; // not JSON: nothing we could apply
      }
      this.lastHeard = Date.now();
      this.onFrame(frame);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.dropSocket();
      if (event.code === CLOSE_BAD_TOKEN) this.refusedCredential();
      if (event.code === CLOSE_TOO_BIG) this.frameRefused();
      this.scheduleReconnect();
    };
  }

  /**
   * The server refused what the socket was opened with. A refused token is
   * renewed; a refused ticket says nothing about the token, which the next
   * ticket request checks (its 401 drops the token then).
   */
  private refusedCredential(): void {
    if (this.openedWithToken) this.options.dropToken(this.token);
  }

  /**
   * The server closed with 1009: a frame we sent was over its limit (which
   * may be lower than the contract's). The largest unanswered send is that
   * frame: it leaves the outbox (so the reconnect does not send it again),
   * its text goes back to the user, and nothing that large is sent again.
   */
  private frameRefused(): void {
    let largest: { frame: TextFrame; bytes: number } | null = null;
    for (const frame of this.outbox.values()) {
      if (frame.type !== 'send' && frame.type !== 'edit') continue;
      const bytes = frameBytes(frame);
      if (!largest || bytes > largest.bytes) largest = { frame, bytes };
    }
    if (!largest) return;
    this.outbox.delete(largest.frame.id);
    this.maxFrameBytes = Math.min(this.maxFrameBytes, largest.bytes - 1);
    this.refuseTooLarge(largest.frame);
  }

  private refuseTooLarge(frame: TextFrame): void {
    // An edit's text stays in its own box; a send's comes back to the composer.
    const notice: Notice =
      frame.type === 'send'
        ? { id: uuid(), code: FRAME_TOO_LARGE, message: '', refusedContent: frame.content }
        : { id: uuid(), code: 'too_large', message: '' };
    this.update({
      pending: this.state.pending.filter((p) => p.requestId !== frame.id),
      versions: this.state.versions.filter((v) => v.requestId !== frame.id),
      notices: [...this.state.notices, notice],
    });
  }

  /** Detach the current socket so none of its late callbacks act; returns it. */
  private dropSocket(): SocketLike | null {
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    clearInterval(this.heartbeatTimer);
    // Subscriptions die with the socket; their answers will never come, and
    // the next welcome subscribes everything followed anyway.
    this.subscribeRequests.clear();
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    if (socket) {
      socket.onmessage = null;
      socket.onclose = null;
    }
    return socket;
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt++, this.options.random);
    const online = !this.options.isOnline || this.options.isOnline();
    this.update({
      connection: online ? { status: 'reconnecting', retryAt: Date.now() + delay } : { status: 'offline' },
    });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
  }

  private startHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    const every = Math.max(250, this.heartbeatMs / 2);
    this.heartbeatTimer = setInterval(() => {
      // Pongs answer our pings, so silence this long means a dead link (a
      // half-open TCP connection never fires `close` on its own).
      if (Date.now() - this.lastHeard > every * 3) {
        this.dropSocket()?.close(CLOSE_SILENT, 'heartbeat timeout');
        this.scheduleReconnect();
      } else {
        this.transmit({ type: 'ping' });
      }
    }, every);
  }

  private transmit(frame: ClientFrame): void {
    if (this.ready && this.socket?.readyState === OPEN) this.socket.send(JSON.stringify(frame));
  }

  private subscribe(conversationId: string, since: Since | undefined = sinceOf(this.conversation(conversationId))): void {
    const id = uuid();
    this.subscribeRequests.set(id, conversationId);
    this.setConversation(conversationId, {
      ...(this.conversation(conversationId) ?? emptyConversation()),
      sync: 'resyncing',
    });
    this.transmit({ type: 'subscribe', id, conversation_id: conversationId, ...(since ? { since } : {}) });
  }

  // ---- frames ----

  private onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case 'welcome':
        return this.onWelcome(frame);
      case 'subscribed':
        if (frame.id) this.subscribeRequests.delete(frame.id);
        this.stopRetrying(frame.conversation_id);
        return this.setConversation(frame.conversation_id, applySubscribed(this.conversation(frame.conversation_id), frame));
      case 'snapshot':
        this.setConversation(frame.conversation_id, applySnapshot(frame));
        return this.prunePending();
      case 'event': {
        const id = frame.conversation_id;
        const step = applyEvent(this.conversation(id), frame);
        if (step.state) this.setConversation(id, step.state);
        if (step.resubscribe && this.followed.has(id) && this.ready) this.subscribe(id, step.resubscribe.since);
        // A new message moves the conversation up the list.
        if (frame.event.kind === 'message') this.update({ listVersion: this.state.listVersion + 1 });
        return this.prunePending();
      }
      case 'unsubscribed':
        // Without an id the server ended the subscription itself: the conversation was deleted.
        if (!frame.id) {
          this.followed.delete(frame.conversation_id);
          this.dropConversation(frame.conversation_id);
          this.update({ listVersion: this.state.listVersion + 1 });
        }
        return;
      case 'ack':
        return this.onAck(frame);
      case 'error':
        return this.onError(frame);
      case 'pong':
        return;
    }
  }

  private onWelcome(frame: WelcomeFrame): void {
    if (this.state.userId && this.state.userId !== frame.user_id) {
      // A new guest identity (the old token could not be renewed): nothing we hold is theirs.
      this.followed.clear();
      this.outbox.clear();
      this.refusals.clear();
      this.state = { ...initialState(), notices: this.state.notices };
    }
    this.ready = true;
    this.attempt = 0;
    this.heartbeatMs = frame.heartbeat_ms > 0 ? frame.heartbeat_ms : this.heartbeatMs;
    this.update({
      connection: { status: 'connected', nodeId: frame.node_id },
      userId: frame.user_id,
      // Anything may have changed while we were away.
      listVersion: this.state.listVersion + 1,
    });
    this.startHeartbeat();
    for (const id of this.followed) this.subscribe(id);
    for (const frame of this.outbox.values()) this.transmit(frame);
  }

  private onAck(frame: AckFrame): void {
    const sent = frame.id ? this.outbox.get(frame.id) : undefined;
    if (!sent) return;
    this.outbox.delete(sent.id);
    if (sent.type === 'cancel') {
      this.update({ cancelling: this.state.cancelling.filter((m) => m !== sent.message_id) });
      return;
    }
    if (sent.type !== 'send') {
      this.update({
        versions: this.state.versions.map((v) =>
          v.requestId === sent.id ? { ...v, assistantMessageId: frame.assistant_message_id ?? null } : v,
        ),
      });
      return this.prunePending();
    }
    const conversationId = frame.conversation_id ?? sent.conversation_id ?? null;
    this.update({
      pending: this.state.pending.map((p) =>
        p.requestId === sent.id ? { ...p, conversationId, userMessageId: frame.user_message_id ?? null } : p,
      ),
    });
    if (!sent.conversation_id && conversationId) {
      // The send subscribed us from seq 1; keep following it across reconnects.
      this.followed.add(conversationId);
      // Its events may not have come yet: an empty state takes them from seq 1.
      if (!this.conversation(conversationId)) this.setConversation(conversationId, emptyConversation());
      this.update({
        created: { ...this.state.created, [sent.id]: conversationId },
        listVersion: this.state.listVersion + 1,
      });
      // A gap seen before we knew this conversation was ours is repaired now.
      if (this.conversation(conversationId)?.sync === 'resyncing') this.subscribe(conversationId);
    }
    this.prunePending();
  }

  private onError(frame: ErrorFrame): void {
    if (frame.code === 'unauthorized') this.refusedCredential();
    const notice: Notice = { id: uuid(), code: frame.code, message: frame.message };
    const sent = frame.id ? this.outbox.get(frame.id) : undefined;
    if (sent) {
      this.outbox.delete(sent.id);
      if (sent.type === 'send') {
        notice.refusedContent = sent.content;
        this.update({ pending: this.state.pending.filter((p) => p.requestId !== sent.id) });
      } else if (sent.type !== 'cancel') {
        this.update({ versions: this.state.versions.filter((v) => v.requestId !== sent.id) });
      } else {
        this.update({ cancelling: this.state.cancelling.filter((m) => m !== sent.message_id) });
      }
    }
    const subscribed = frame.id ? this.subscribeRequests.get(frame.id) : undefined;
    if (frame.id && subscribed) {
      this.subscribeRequests.delete(frame.id);
      // A conversation asked for again later shows that in `unavailable`, not as a notice.
      if (this.onSubscribeRefused(subscribed, frame.code) === 'retrying') return;
    }
    this.update({ notices: [...this.state.notices, notice] });
  }

  private onSubscribeRefused(conversationId: string, code: ErrorCode): 'dropped' | 'retrying' | 'kept' {
    if (code === 'not_found' || code === 'forbidden') {
      this.forget(conversationId);
      this.update({ listVersion: this.state.listVersion + 1 });
      return 'dropped';
    }
    if (code === 'unavailable' || code === 'rate_limited' || code === 'internal') {
      // A log being rebuilt answers `unavailable` for a while: keep it, and
      // ask again with backoff.
      const refusals = this.refusals.get(conversationId) ?? 0;
      this.refusals.set(conversationId, refusals + 1);
      const delay = backoffDelay(refusals, this.options.random, RESUBSCRIBE_BASE_MS, RESUBSCRIBE_CAP_MS);
      clearTimeout(this.retryTimers.get(conversationId));
      this.retryTimers.set(
        conversationId,
        setTimeout(() => {
          this.retryTimers.delete(conversationId);
          if (this.ready && this.followed.has(conversationId)) this.subscribe(conversationId);
        }, delay),
      );
      this.update({ unavailable: { ...this.state.unavailable, [conversationId]: Date.now() + delay } });
      return 'retrying';
    }
    return 'kept';
  }

  /** The conversation is served again, or no longer wanted: no more retries. */
  private stopRetrying(conversationId: string): void {
    clearTimeout(this.retryTimers.get(conversationId));
    this.retryTimers.delete(conversationId);
    this.refusals.delete(conversationId);
    if (conversationId in this.state.unavailable) {
      const { [conversationId]: _served, ...rest } = this.state.unavailable;
      this.update({ unavailable: rest });
    }
  }

  // ---- state ----

  private conversation(id: string): ConversationState | undefined {
    return this.state.conversations[id];
  }

  private setConversation(id: string, conversation: ConversationState): void {
    if (this.state.conversations[id] === conversation) return;
    this.update({ conversations: { ...this.state.conversations, [id]: conversation } });
  }

  private dropConversation(id: string): void {
    const { [id]: _dropped, ...rest } = this.state.conversations;
    const { [id]: _choices, ...choices } = this.state.choices;
    this.update({
      conversations: rest,
      choices,
      pending: this.state.pending.filter((p) => p.conversationId !== id),
      versions: this.state.versions.filter((v) => v.conversationId !== id),
      removed: [...this.state.removed, id],
    });
  }

  /** Pending sends and versions leave once their message is part of the conversation. */
  private prunePending(): void {
    const has = (conversationId: string | null, messageId: string | null) =>
      messageId !== null &&
      conversationId !== null &&
      (this.conversation(conversationId)?.tree.some((m) => m.id === messageId) ?? false);
    const shown = (p: PendingSend) => has(p.conversationId, p.userMessageId);
    if (this.state.pending.some(shown)) this.update({ pending: this.state.pending.filter((p) => !shown(p)) });
    const arrived = (v: PendingVersion) => has(v.conversationId, v.assistantMessageId);
    if (this.state.versions.some(arrived)) this.update({ versions: this.state.versions.filter((v) => !arrived(v)) });
  }

  private update(patch: Partial<ClientState>): void {
    this.state = { ...this.state, ...patch };
    for (const listener of this.listeners) listener();
  }
}
