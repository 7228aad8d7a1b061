// The wire contract, version 1 with its extension 1.2 (versions and
// branches; see docs/protocol.md). Only this module and
// its siblings in `protocol/` may know these shapes; the UI sees `Message`
// and the client's state.

export type Role = 'user' | 'assistant';
export type MessageStatus = 'streaming' | 'complete' | 'cancelled' | 'failed';

export interface Message {
  id: string;
  conversation_id: string;
  /**
   * 1.2: the message this one follows (a reply's question, a question's
   * previous reply); absent or null for a first message and its edits.
   * Messages with the same parent are versions of one another.
   */
  parent_id?: string | null;
  role: Role;
  content: string;
  status: MessageStatus;
  model?: string;
  created_at: string;
  error?: string;
}

export type ChatEvent =
  | { kind: 'message'; message: Message }
  | { kind: 'delta'; message_id: string; text: string }
  | { kind: 'done'; message_id: string; finish_reason: string; usage?: unknown }
  | { kind: 'cancelled'; message_id: string }
  | { kind: 'failed'; message_id: string; error: string };

export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'too_large'
  | 'rate_limited'
  | 'conflict'
  | 'unavailable'
  | 'internal';

export interface Since {
  epoch: string;
  seq: number;
}

export type ClientFrame =
  | { type: 'subscribe'; id: string; conversation_id: string; since?: Since }
  | { type: 'unsubscribe'; id: string; conversation_id: string }
  | {
      type: 'send';
      id: string;
      conversation_id?: string;
      content: string;
      client_msg_id: string;
      model?: string;
      /** 1.2: the message the new one follows; absent, the conversation's newest. */
      parent_id?: string;
    }
  /** 1.2: a new reply beside an assistant message (or to a user message). */
  | { type: 'regenerate'; id: string; message_id: string; client_msg_id: string; model?: string }
  /** 1.2: a new version of a user message (same parent), and its reply. */
  | { type: 'edit'; id: string; message_id: string; content: string; client_msg_id: string; model?: string }
  /** 1.2: a reply that ended early (cancelled, failed) continued, as a new version beside it. */
  | { type: 'continue'; id: string; message_id: string; client_msg_id: string; model?: string }
  | { type: 'cancel'; id: string; message_id: string }
  | { type: 'ping'; id?: string };

export interface WelcomeFrame {
  type: 'welcome';
  node_id: string;
  connection_id: string;
  user_id: string;
  protocol: number;
  heartbeat_ms: number;
}
export interface SubscribedFrame {
  type: 'subscribed';
  id?: string;
  conversation_id: string;
  epoch: string;
  seq: number;
  recovered: boolean;
}
export interface SnapshotFrame {
  type: 'snapshot';
  conversation_id: string;
  epoch: string;
  seq: number;
  /** The active path, first message first (all a v1 client knows). */
  messages: Message[];
  /** 1.2: every message not on the active path, in creation order; absent from a v1 node. */
  branches?: Message[];
}
export interface EventFrame {
  type: 'event';
  conversation_id: string;
  epoch: string;
  seq: number;
  ts: number;
  event: ChatEvent;
}
export interface UnsubscribedFrame {
  type: 'unsubscribed';
  id?: string;
  conversation_id: string;
}
export interface AckFrame {
  type: 'ack';
  id?: string;
  conversation_id?: string;
  user_message_id?: string;
  assistant_message_id?: string;
  message_id?: string;
}
export interface PongFrame {
  type: 'pong';
  id?: string;
}
export interface ErrorFrame {
  type: 'error';
  id?: string;
  code: ErrorCode;
  message: string;
}

export type ServerFrame =
  | WelcomeFrame
  | SubscribedFrame
  | SnapshotFrame
  | EventFrame
  | UnsubscribedFrame
  | AckFrame
  | PongFrame
  | ErrorFrame;

/** WebSocket close codes the client treats specially. */
export const CLOSE_BAD_TOKEN = 1008;
/** A frame over the server's size limit (`MAX_FRAME_BYTES`): never to be sent again as it is. */
export const CLOSE_TOO_BIG = 1009;
