// The contract's limits on a message, checked before it is sent: `content`
// is at most 32,000 characters (Unicode scalar values), and the whole `send`
// frame, as JSON in UTF-8, at most 65,536 bytes (over it the server closes the
// socket with 1009). A Chinese character is three bytes, a Vietnamese letter
// with marks two or three: 25,000 of them fit the first limit, not the second.

/** `content`, in characters (Unicode scalar values). */
export const MAX_CONTENT_CHARS = 32_000;
/** One WebSocket message, in bytes (`MAX_FRAME_BYTES`). */
export const MAX_FRAME_BYTES = 65_536;
/** The counter shows from this share of either limit. */
export const NEAR_LIMIT = 0.8;

/** Characters as the server counts them: Unicode scalar values (a surrogate pair is one). */
export function charCount(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one character.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}

/** Bytes of `text` in UTF-8 (a lone surrogate as U+FFFD, as the browser sends it). */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/** The bytes a frame takes on the wire: its JSON in UTF-8. */
export function frameBytes(frame: unknown): number {
  return utf8Length(JSON.stringify(frame));
}

/** Stands for the UUIDs a real `send` carries (`id`, `client_msg_id`): the same length. */
const UUID_SIZED = '00000000-0000-0000-0000-000000000000';

/** The size of the `send` frame that would carry `content`, as `ChatClient.send` builds it. */
export function sendFrameBytes(content: string, conversationId: string | null, model?: string): number {
  const frame: Record<string, string> = { type: 'send', id: UUID_SIZED, content, client_msg_id: UUID_SIZED };
  if (conversationId) frame.conversation_id = conversationId;
  if (model) frame.model = model;
  return frameBytes(frame);
}

export interface DraftCheck {
  chars: number;
  bytes: number;
  /** More characters than `content` may hold. */
  tooManyChars: boolean;
  /** The frame would be over the byte limit. */
  tooManyBytes: boolean;
  /** Close enough to a limit (or over) for the counter to show. */
  near: boolean;
  /** Which limit the counter should count: the one the draft is closest to. */
  measure: 'chars' | 'bytes';
}

export interface Limits {
  maxChars: number;
  maxBytes: number;
}

export const DEFAULT_LIMITS: Limits = { maxChars: MAX_CONTENT_CHARS, maxBytes: MAX_FRAME_BYTES };

/** Whether `content` can be sent in one frame, and how close it is to the limits. */
export function checkDraft(
  content: string,
  context: { conversationId: string | null; model?: string },
  limits: Limits = DEFAULT_LIMITS,
): DraftCheck {
  const chars = charCount(content);
  const bytes = sendFrameBytes(content, context.conversationId, context.model);
  const charShare = chars / limits.maxChars;
  const byteShare = bytes / limits.maxBytes;
  return {
    chars,
    bytes,
    tooManyChars: chars > limits.maxChars,
    tooManyBytes: bytes > limits.maxBytes,
    near: charShare >= NEAR_LIMIT || byteShare >= NEAR_LIMIT,
    measure: byteShare > charShare ? 'bytes' : 'chars',
  };
}
