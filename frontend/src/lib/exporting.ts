// Exporting the open conversation, in the browser: as Markdown (the active
// path, what the reader sees, question after answer) and as JSON (the whole
// tree as the node answers `GET /api/conversations/{id}`: `messages`, the
// active path, and `branches`, every other version).

import type { ConversationDetail, StoredMessage } from '../api/http';
import type { Dict } from '../i18n/en';

/** The words the Markdown export uses, in the UI's language. */
export interface ExportLabels {
  you: string;
  assistant: string;
  untitled: string;
  /** `exportedOn(date)`: the line under the title. */
  exportedOn: (date: string) => string;
  stopped: string;
  failed: string;
}

export const EXPORT_FORMAT = 'chatstream.conversation';
export const EXPORT_VERSION = 1;

/** The JSON export: the conversation as the node gave it, tree included, with what it is and when it was taken. */
export function conversationJson(conversation: ConversationDetail, exportedAt: Date): string {
  const document = {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    exported_at: exportedAt.toISOString(),
    id: conversation.id,
    title: conversation.title,
    epoch: conversation.epoch,
    seq: conversation.seq,
    messages: conversation.messages,
    branches: conversation.branches ?? [],
  };
  return `${JSON.stringify(document, null, 2)}\n`;
}

/** The fence still open at the end of `text` (a reply stopped inside a code block), or null. */
export function openFence(text: string): string | null {
  let open: string | null = null;
  for (const line of text.split('\n')) {
    const m = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line);
    if (!m) continue;
    const marker = m[1]!;
    if (open === null) {
      if (!(marker[0] === '`' && m[2]!.includes('`'))) open = marker;
    } else if (marker[0] === open[0] && marker.length >= open.length && m[2]!.trim() === '') {
      open = null;
    }
  }
  return open;
}

/** A title on one line, its Markdown markers shown as text. */
function headingText(title: string): string {
  return title.replace(/\s+/g, ' ').trim().replace(/([\\`*_{}[\]<>#|~])/g, '\\$1');
}

/**
 * The Markdown export: the title, then each message of the active path under
 * the name of who wrote it. A reply is Markdown already and stays as it is;
 * a question is shown as the person typed it (Markdown too, as the UI shows
 * it). A reply that was stopped or failed says so.
 */
export function conversationMarkdown(conversation: ConversationDetail, labels: ExportLabels, exportedAt: Date): string {
  const title = conversation.title?.trim() ? headingText(conversation.title) : labels.untitled;
  const parts = [`# ${title}`, `*${labels.exportedOn(exportedAt.toISOString().slice(0, 16).replace('T', ' ') + ' UTC')}*`];
  for (const message of conversation.messages) parts.push(messageMarkdown(message, labels));
  return `${parts.join('\n\n')}\n`;
}

function messageMarkdown(message: StoredMessage, labels: ExportLabels): string {
  const who = message.role === 'user' ? labels.you : labels.assistant;
  const model = message.role === 'assistant' && message.model ? ` · ${message.model}` : '';
  const lines = [`## ${who}${model}`, '', message.content.trimEnd() || '…'];
  // A fence left open by a stopped reply would swallow the rest of the file.
  const fence = openFence(message.content);
  if (fence) lines.push(fence);
  if (message.status === 'cancelled') lines.push('', `*${labels.stopped}*`);
  if (message.status === 'failed') lines.push('', `*${labels.failed}*`);
  return lines.join('\n');
}

/** A file name from the title: letters (any script) and digits, dashes between, at most 60 characters. */
export function exportFileName(title: string | null, extension: 'md' | 'json'): string {
  const stem = (title ?? '')
    .normalize('NFC')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
    .replace(/-+$/, '');
  return `${stem || 'chatstream-conversation'}.${extension}`;
}

/** Offers `content` as a download named `name` (no request: a local Blob). */
export function download(name: string, content: string, type: string): void {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.rel = 'noopener';
  document.body.append(link);
  link.click();
  link.remove();
  // After the click has started the download.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** The export's words from the UI's dictionary. */
export function exportLabels(t: Pick<Dict, 'you' | 'assistant' | 'untitledChat' | 'exportedOn' | 'replyStopped' | 'failedReply'>): ExportLabels {
  return {
    you: t.you,
    assistant: t.assistant,
    untitled: t.untitledChat,
    exportedOn: t.exportedOn,
    stopped: t.replyStopped,
    failed: t.failedReply,
  };
}
