import { createContext, useContext, useSyncExternalStore } from 'react';
import type { ChatClient, ClientState } from '../protocol';

export const ChatContext = createContext<ChatClient | null>(null);

export function useChatClient(): ChatClient {
  const client = useContext(ChatContext);
  if (!client) throw new Error('useChatClient outside <ChatContext.Provider>');
  return client;
}

/** The client's state; components re-render when it changes. */
export function useChatState(): ClientState {
  const client = useChatClient();
  return useSyncExternalStore(client.onChange, client.getState);
}
