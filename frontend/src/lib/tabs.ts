// Tabs of the same origin tell each other that the conversation list changed
// (one created or deleted a conversation), so the other tabs' lists refresh
// without waiting for focus. BroadcastChannel never delivers a message to the
// channel object that posted it; one object per page does both.

const NAME = 'chatstream.conversations';

export interface ListChange {
  type: 'list-changed';
}

let channel: BroadcastChannel | null | undefined;

function open(): BroadcastChannel | null {
  if (channel === undefined) channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(NAME) : null;
  return channel;
}

/** Tell the other tabs to refresh their list. */
export function announceListChange(): void {
  open()?.postMessage({ type: 'list-changed' } satisfies ListChange);
}

/** `listener` runs when another tab changed the list; returns the unsubscribe. */
export function onListChange(listener: () => void): () => void {
  const ch = open();
  if (!ch) return () => {};
  const onMessage = (event: MessageEvent) => {
    if ((event.data as Partial<ListChange> | null)?.type === 'list-changed') listener();
  };
  ch.addEventListener('message', onMessage);
  return () => ch.removeEventListener('message', onMessage);
}
