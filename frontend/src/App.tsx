import { useCallback, useEffect, useRef, useState } from 'react';
import { ChatHeader } from './components/ChatHeader';
import { Composer } from './components/Composer';
import { ConnectionIndicator } from './components/ConnectionIndicator';
import { titleOf } from './components/ConversationList';
import { EmptyState } from './components/EmptyState';
import { MessageList } from './components/MessageList';
import { ModelPicker } from './components/ModelPicker';
import { Notices } from './components/Notices';
import { Sidebar } from './components/Sidebar';
import { useBranchActions, useChatClient, useChatState, useConversationView } from './hooks/useChat';
import { useConversations } from './hooks/useConversations';
import { useIdentity } from './hooks/useIdentity';
import { useModels } from './hooks/useModels';
import { useRoute, type Navigate } from './hooks/useRoute';
import { useTheme } from './hooks/useTheme';
import { useI18n } from './i18n/I18n';
import type { Message } from './protocol';

export function App() {
  const client = useChatClient();
  const state = useChatState();
  const [route, navigate, target] = useRoute();
  const { conversations, loaded, remove, rename, hasMore, loadingMore, loadMore } = useConversations(
    state.listVersion,
    state.removed,
  );
  const { models, model, setModel } = useModels();
  const [theme, setTheme] = useTheme();
  const [draft, setDraft] = useState('');
  const [drawerOpen, setDrawerOpen] = useState(false);
  const [newChatRequest, setNewChatRequest] = useState<string | null>(null);
  /** Grows when the message box should take focus (a suggestion was picked). */
  const [composerFocus, setComposerFocus] = useState(0);
  const { t } = useI18n();
  useIdentity();

  // Receive the open conversation's events (resumed by the client after any reconnect).
  useEffect(() => {
    if (!route) return;
    client.follow(route);
    return () => client.unfollow(route);
  }, [client, route]);

  useOpenCreatedConversation(state.created, newChatRequest, route, navigate, setNewChatRequest);
  useLeaveRemovedConversation(state.removed, state.userId, route, navigate);
  useGiveBackRefusedText(state.notices, setDraft);

  const conversation = route ? state.conversations[route] : undefined;
  // The versions shown at each level of the conversation's tree (contract 1.2).
  const view = useConversationView(state, route, target?.message ?? null);
  const messages = view.messages;
  const pending = state.pending.filter((p) => p.conversationId === route);
  // Wherever it is in the tree: the one reply that may be streaming.
  const streaming = lastReplyIfStreaming(conversation?.tree ?? []);
  const loading = route !== null && (!conversation || (conversation.epoch === null && conversation.sync !== 'live'));
  const busy = pending.length > 0 || view.versions.length > 0 || loading;

  const summary = conversations.find((c) => c.id === route);
  const firstUser = messages.find((m) => m.role === 'user');
  const title = route
    ? summary
      ? titleOf(summary, t.untitledChat)
      : firstUser?.content.slice(0, 80) ?? t.untitledOpen
    : t.newChat;
  useEffect(() => {
    document.title = route ? `${title} · ${t.appTitle}` : t.appTitle;
  }, [route, title, t]);

  const send = useCallback(
    (text: string) => {
      // From another branch than the newest: the new question follows the last message shown.
      const requestId = client.send(route, text, model || undefined, view.sendParent);
      if (!route) setNewChatRequest(requestId);
      return true;
    },
    [client, route, model, view.sendParent],
  );

  // Edit, Regenerate, Continue and ‹ 2/3 ›; locked (saying why) while the server would answer `conflict`.
  const branchActions = useBranchActions(route, model || undefined);
  const locked = streaming !== undefined ? t.lockedWhileReplying : busy ? t.lockedWhileSending : null;

  // A failed reply's Retry asks for a new version of that reply (‹ 1/2 ›), beside the failed one.
  const retry = branchActions.regenerate;
  // Not while a reply is being written: the server would refuse the send.
  const canRetry = !busy && streaming === undefined;

  const closeDrawer = useCallback(() => setDrawerOpen(false), []);
  const newChat = () => {
    closeDrawer();
    navigate(null);
  };

  return (
    <div className="app" data-drawer={drawerOpen}>
      <a href="#composer-input" className="skip-link">
        {t.skipToComposer}
      </a>
      <Sidebar
        open={drawerOpen}
        onClose={closeDrawer}
        onNewChat={newChat}
        conversations={conversations}
        loaded={loaded}
        current={route}
        onRename={rename}
        onDelete={(id) => {
          if (id === route) navigate(null, true);
          void remove(id);
        }}
        hasMore={hasMore}
        loadingMore={loadingMore}
        onLoadMore={() => void loadMore()}
        onOpenMessage={(conversationId, messageId) => navigate(conversationId, false, messageId)}
        currentMessage={target?.message ?? null}
        theme={theme}
        onTheme={setTheme}
      />
      {drawerOpen && <div className="scrim" onClick={closeDrawer} aria-hidden="true" />}
      <main className="chat">
        <ChatHeader
          title={title}
          drawerOpen={drawerOpen}
          onMenu={() => setDrawerOpen(true)}
          conversationId={route}
          onRename={route ? (newTitle) => rename(route, newTitle) : undefined}
        >
          <ModelPicker models={models} value={model} onChange={setModel} />
          <ConnectionIndicator connection={state.connection} onRetry={() => client.retryNow()} />
        </ChatHeader>
        <Notices
          notices={state.notices}
          onDismiss={(id) => client.dismissNotice(id)}
          retrying={route !== null && state.unavailable[route] !== undefined}
        />
        {loading ? (
          <div className="loading" role="status">
            <span className="spinner" aria-hidden="true" />
            {t.loadingConversation}
          </div>
        ) : messages.length === 0 && pending.length === 0 ? (
          <EmptyState
            onPick={(text) => {
              setDraft(text);
              setComposerFocus((n) => n + 1);
            }}
          />
        ) : (
          <MessageList
            conversationKey={route ?? 'new'}
            path={view.path}
            pending={pending}
            versions={view.versions}
            actions={branchActions}
            locked={locked}
            onRetry={canRetry ? retry : undefined}
            target={target}
          />
        )}
        <Composer
          value={draft}
          onChange={setDraft}
          onSend={send}
          streaming={streaming !== undefined}
          stopping={streaming !== undefined && state.cancelling.includes(streaming.id)}
          onStop={() => streaming && client.cancel(streaming.id)}
          busy={busy}
          focusKey={route ?? 'new'}
          focusRequest={composerFocus}
          conversationId={route}
          model={model || undefined}
        />
      </main>
    </div>
  );
}

/** The last reply, when it is still being written (here, after a reload or in another tab). */
function lastReplyIfStreaming(messages: readonly Message[]): Message | undefined {
  const reply = messages.findLast((m) => m.role === 'assistant');
  return reply?.status === 'streaming' ? reply : undefined;
}

/** Once the server takes the first message of a new chat, show that conversation. */
function useOpenCreatedConversation(
  created: Readonly<Record<string, string>>,
  request: string | null,
  route: string | null,
  navigate: Navigate,
  done: (request: null) => void,
) {
  useEffect(() => {
    const id = request ? created[request] : undefined;
    if (!id) return;
    done(null);
    // Unless the user went elsewhere meanwhile.
    if (route === null) navigate(id);
  }, [created, request, route, navigate, done]);
}

/** A conversation deleted (here or in another tab) or not ours any more closes. */
function useLeaveRemovedConversation(
  removed: readonly string[],
  userId: string | null,
  route: string | null,
  navigate: Navigate,
) {
  const user = useRef(userId);
  useEffect(() => {
    const newUser = user.current !== null && userId !== null && user.current !== userId;
    if (userId !== null) user.current = userId;
    if (route && (newUser || removed.includes(route))) navigate(null, true);
  }, [removed, userId, route, navigate]);
}

/** A send the server refused puts its text back in an empty composer, to retry. */
function useGiveBackRefusedText(notices: readonly { id: string; refusedContent?: string }[], setDraft: (update: (draft: string) => string) => void) {
  const handled = useRef(new Set<string>());
  useEffect(() => {
    for (const n of notices) {
      if (n.refusedContent === undefined || handled.current.has(n.id)) continue;
      handled.current.add(n.id);
      const text = n.refusedContent;
      setDraft((draft) => draft || text);
    }
  }, [notices, setDraft]);
}
