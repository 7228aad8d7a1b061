import { createContext, useCallback, useContext, useEffect, useMemo, useSyncExternalStore } from 'react';
import { followUpParent, visiblePath, type ChatClient, type ClientState, type PathStep, type PendingVersion, type TreeMessage } from '../protocol';

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

/** What the open conversation shows (contract 1.2: one version at each level of its tree). */
export interface ConversationView {
  /** The messages shown, first to last, with the versions at each level. */
  path: readonly PathStep[];
  /** The same messages, without the versions. */
  messages: readonly TreeMessage[];
  /** New versions asked for in this conversation and not shown yet. */
  versions: readonly PendingVersion[];
  /**
   * The message a new question follows when it is not the conversation's
   * newest (the reader is on another branch): sent as `parent_id`.
   */
  sendParent: string | undefined;
}

const NO_VERSIONS: readonly PendingVersion[] = [];

/**
 * The open conversation as shown: the path through its tree the reader
 * chose (‹ 2/3 ›), else the one to the newest message. A search result on
 * another branch (`target`) is brought onto the path.
 */
export function useConversationView(state: ClientState, route: string | null, target: string | null): ConversationView {
  const client = useChatClient();
  const tree = route ? state.conversations[route]?.tree : undefined;
  const choices = route ? state.choices[route] : undefined;
  const path = useMemo(() => (tree ? visiblePath(tree, choices) : []), [tree, choices]);
  const messages = useMemo(() => path.map((s) => s.message), [path]);
  const allVersions = state.versions;
  const versions = useMemo(() => {
    const mine = allVersions.filter((v) => v.conversationId === route);
    return mine.length ? mine : NO_VERSIONS;
  }, [allVersions, route]);

  const sendParent = tree ? followUpParent(tree, path) : undefined;

  const targetInTree = target !== null && (tree?.some((m) => m.id === target) ?? false);
  useEffect(() => {
    if (route && target && targetInTree) client.revealMessage(route, target);
  }, [client, route, target, targetInTree]);

  return { path, messages, versions, sendParent };
}

/** What the reader can do with versions, for the open conversation. */
export interface BranchActions {
  regenerate: (replyId: string) => void;
  edit: (messageId: string, content: string) => void;
  continueReply: (replyId: string) => void;
  showVersion: (messageId: string) => void;
}

export function useBranchActions(route: string | null, model: string | undefined): BranchActions {
  const client = useChatClient();
  const regenerate = useCallback(
    (id: string) => {
      if (route) client.regenerate(route, id, model);
    },
    [client, route, model],
  );
  const edit = useCallback(
    (id: string, content: string) => {
      if (route) client.edit(route, id, content, model);
    },
    [client, route, model],
  );
  const continueReply = useCallback(
    (id: string) => {
      if (route) client.continueReply(route, id, model);
    },
    [client, route, model],
  );
  const showVersion = useCallback(
    (id: string) => {
      if (route) client.showVersion(route, id);
    },
    [client, route],
  );
  return useMemo(() => ({ regenerate, edit, continueReply, showVersion }), [regenerate, edit, continueReply, showVersion]);
}
