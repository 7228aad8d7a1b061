// The wire contract, version 1 (see docs/protocol.md). Only this module and
// its siblings in `protocol/` may know these shapes; the UI sees `Message`
// and the client's state.

export type Role = 'user' | 'assistant';
export type MessageStatus = 'streaming' | 'complete' | 'cancelled' | 'failed';

export interface Message {
  id: string;
  conversation_id: string;
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
    }
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
  messages: Message[];
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
