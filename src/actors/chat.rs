//! The operations both transports share — WebSocket frames and HTTP routes —
//! each validated and authorized here once.

use std::sync::Arc;

use ractor::{ActorRef, rpc::CallResult};
use uuid::Uuid;

use super::NodeContext;
use super::generations::{GenerationSpec, GenerationsMsg};
use crate::engine::durable::stored_conversation;
use crate::engine::{Branch, ConversationInfo, MessageInfo, Turn, TurnRequest};
use crate::protocol::{
    ApiError, ConversationDetail, ConversationListing, ConversationSummary, EditRequest, ErrorCode,
    Message, MessageStatus, RegenerateRequest, Role, SearchResult, SendRequest, UserId,
    validate_content,
};
use crate::store::StoreError;

/// A handle on the node for one caller's requests. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    context: Arc<NodeContext>,
    generations: ActorRef<GenerationsMsg>,
}

impl Chat {
    pub fn new(context: Arc<NodeContext>, generations: ActorRef<GenerationsMsg>) -> Chat {
        Chat {
            context,
            generations,
        }
    }

    pub fn context(&self) -> &Arc<NodeContext> {
        &self.context
    }

    /// The conversation, if `user` owns it.
    pub async fn owned_conversation(
        &self,
        user: UserId,
        id: Uuid,
    ) -> Result<ConversationInfo, ApiError> {
        match self.context.engine.conversation(id).await {
            Ok(Some(info)) if info.owner == user => Ok(info),
            Ok(Some(_)) => Err(ApiError::forbidden("conversation")),
            Ok(None) => Err(ApiError::not_found("conversation")),
            Err(e) => Err(e.into_api("conversation")),
        }
    }

    /// One page of the user's conversations, newest first: from the durable
    /// store when the node has one, else from the engine.
    pub async fn list(
        &self,
        user: UserId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<ConversationListing, ApiError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let page = match self.context.store() {
            Some(store) => store.list_conversations(&user, limit, before).await,
            None => {
                let list = self
                    .context
                    .engine
                    .list_conversations(&user)
                    .await
                    .map_err(|e| e.into_api("conversation"))?;
                crate::store::page_of(
                    list.iter().map(stored_conversation).collect(),
                    limit,
                    before,
                )
            }
        }
        .map_err(store_error)?;
        Ok(ConversationListing {
            conversations: page
                .conversations
                .into_iter()
                .map(|c| ConversationSummary {
                    id: c.id,
                    title: c.title,
                    created_at: c.created_at,
                    updated_at: c.updated_at,
                })
                .collect(),
            next: page.next,
        })
    }

    /// The user's own messages matching `query`, best first.
    pub async fn search(
        &self,
        user: UserId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchResult>, ApiError> {
        let Some(store) = self.context.store() else {
            return Err(ApiError::unavailable(
                "search needs a durable store, and this node runs without one",
            ));
        };
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("a search is at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let hits = store
            .search(&user, query, limit.clamp(1, MAX_SEARCH_RESULTS))
            .await
            .map_err(store_error)?;
        Ok(hits
            .into_iter()
            .map(|hit| SearchResult {
                conversation_id: hit.conversation_id,
                conversation_title: hit.conversation_title,
                message_id: hit.message_id,
                role: hit.role,
                snippet: hit.snippet,
                created_at: hit.created_at,
            })
            .collect())
    }

    pub async fn create(
        &self,
        user: UserId,
        title: Option<String>,
    ) -> Result<ConversationDetail, ApiError> {
        if let Some(title) = &title {
            let chars = title.chars().count();
            if chars > MAX_TITLE_CHARS {
                return Err(ApiError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "The title has {chars} characters; at most {MAX_TITLE_CHARS} are allowed."
                    ),
                ));
            }
        }
        self.room_for_a_conversation(&user).await?;
        let info = self
            .context
            .engine
            .create_conversation(user.clone(), title)
            .await
            .map_err(|e| e.into_api("conversation"))?;
        self.detail(user, info.id).await
    }

    /// Gives the user's conversation a new title: trimmed, 1 to
    /// `MAX_TITLE_CHARS` characters.
    pub async fn rename(
        &self,
        user: UserId,
        id: Uuid,
        title: &str,
    ) -> Result<ConversationDetail, ApiError> {
        let title = title.trim();
        let chars = title.chars().count();
        if chars == 0 {
            return Err(ApiError::bad_request("The title must not be empty."));
        }
        if chars > MAX_TITLE_CHARS {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("The title has {chars} characters; at most {MAX_TITLE_CHARS} are allowed."),
            ));
        }
        self.owned_conversation(user.clone(), id).await?;
        self.context
            .engine
            .rename_conversation(id, title.to_owned())
            .await
            .map_err(|e| e.into_api("conversation"))?;
        self.detail(user, id).await
    }

    pub async fn detail(&self, user: UserId, id: Uuid) -> Result<ConversationDetail, ApiError> {
        self.owned_conversation(user, id).await?;
        let snapshot = self
            .context
            .engine
            .snapshot(id)
            .await
            .map_err(|e| e.into_api("conversation"))?;
        let (messages, branches) = crate::branches::split_active(snapshot.messages);
        Ok(ConversationDetail {
            id,
            title: snapshot.info.title,
            epoch: snapshot.epoch.to_string(),
            seq: snapshot.seq,
            messages,
            branches,
        })
    }

    /// Refuses a new conversation when `user` has `MAX_CONVERSATIONS_PER_USER`
    /// already: counted in the durable store when the node has one (it
    /// outlives every cache), else, or while the store is down (its outage
    /// must not stop anyone from chatting), in the engine.
    async fn room_for_a_conversation(&self, user: &UserId) -> Result<(), ApiError> {
        let limit = self.context.settings.max_conversations_per_user;
        let stored = match self.context.store() {
            Some(store) => match store.count_conversations(user).await {
                Ok(count) => Some(count),
                Err(error) => {
                    tracing::warn!(%error, "conversations counted in the engine: the store did not answer");
                    None
                }
            },
            None => None,
        };
        let existing = match stored {
            Some(count) => count,
            None => self
                .context
                .engine
                .list_conversations(user)
                .await
                .map_err(|e| e.into_api("conversation"))?
                .len() as u64,
        };
        if existing >= limit as u64 {
            metrics::counter!("chatstream_limit_refusals_total", "limit" => "conversations")
                .increment(1);
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "You have reached the limit of {limit} conversations. \
                     Delete one to start another."
                ),
            ));
        }
        Ok(())
    }

    /// Starts a turn (or answers a resend) and its reply's generation.
    pub async fn send(&self, user: UserId, request: SendRequest) -> Result<Turn, ApiError> {
        request.validate()?;
        let branch = match request.parent_id {
            None => Branch::Newest,
            Some(parent_id) => {
                let Some(conversation_id) = request.conversation_id else {
                    return Err(ApiError::bad_request(
                        "parent_id needs the conversation_id it belongs to",
                    ));
                };
                let (info, parent) = self.owned_message(&user, parent_id).await?;
                if info.conversation_id != conversation_id {
                    return Err(ApiError::not_found("message"));
                }
                if parent.role != Role::Assistant {
                    return Err(ApiError::conflict(
                        "a new message follows an assistant reply, not a user message",
                    ));
                }
                Branch::After(Some(parent_id))
            }
        };
        if request.conversation_id.is_none() {
            self.room_for_a_conversation(&user).await?;
        }
        self.start_turn(TurnRequest {
            user,
            conversation_id: request.conversation_id,
            content: request.content,
            model: self.model(request.model.as_deref(), None)?,
            client_msg_id: request.client_msg_id,
            branch,
        })
        .await
    }

    /// A new reply beside an assistant message (or a new reply to a user
    /// message), its older versions kept.
    pub async fn regenerate(
        &self,
        user: UserId,
        request: RegenerateRequest,
    ) -> Result<Turn, ApiError> {
        let (info, message) = self.owned_message(&user, request.message_id).await?;
        let to = match message.role {
            Role::User => message.id,
            Role::Assistant => message.parent_id.ok_or_else(no_question)?,
        };
        self.new_reply(user, request, info, &message, to, String::new())
            .await
    }

    /// A new version of a user message beside the old one, and its reply.
    pub async fn edit(&self, user: UserId, request: EditRequest) -> Result<Turn, ApiError> {
        validate_content(&request.content)?;
        let (info, message) = self.owned_message(&user, request.message_id).await?;
        if message.role != Role::User {
            return Err(ApiError::conflict(
                "only a user message can be edited; regenerate a reply instead",
            ));
        }
        self.start_turn(TurnRequest {
            user,
            conversation_id: Some(info.conversation_id),
            content: request.content,
            model: self.model(request.model.as_deref(), None)?,
            client_msg_id: request.client_msg_id,
            branch: Branch::After(message.parent_id),
        })
        .await
    }

    /// A new version of a reply that was cancelled or failed, starting with
    /// its text, which the model then continues.
    pub async fn continue_reply(
        &self,
        user: UserId,
        request: RegenerateRequest,
    ) -> Result<Turn, ApiError> {
        let (info, message) = self.owned_message(&user, request.message_id).await?;
        if message.role != Role::Assistant
            || !matches!(
                message.status,
                MessageStatus::Cancelled | MessageStatus::Failed
            )
        {
            return Err(ApiError::conflict(
                "only a reply that was stopped or failed can be continued",
            ));
        }
        let to = message.parent_id.ok_or_else(no_question)?;
        let prefix = message.content.clone();
        self.new_reply(user, request, info, &message, to, prefix)
            .await
    }

    /// Starts a reply alone, to the user message `to`, beside `message` (the
    /// reply being redone) and starting with `prefix`.
    async fn new_reply(
        &self,
        user: UserId,
        request: RegenerateRequest,
        info: MessageInfo,
        message: &Message,
        to: Uuid,
        prefix: String,
    ) -> Result<Turn, ApiError> {
        self.start_turn(TurnRequest {
            user,
            conversation_id: Some(info.conversation_id),
            content: String::new(),
            model: self.model(request.model.as_deref(), message.model.as_deref())?,
            client_msg_id: request.client_msg_id,
            branch: Branch::Reply { to, prefix },
        })
        .await
    }

    /// The model a turn uses: the one asked for, else `previous` (the one
    /// that wrote the reply being redone) while the node still serves it,
    /// else the node's default.
    fn model(&self, asked: Option<&str>, previous: Option<&str>) -> Result<String, ApiError> {
        let providers = &self.context.providers;
        let model = match (asked, previous) {
            (Some(asked), _) => asked,
            (None, Some(previous)) if providers.get(previous).is_some() => previous,
            (None, _) => providers.default_model(),
        };
        if providers.get(model).is_none() {
            return Err(ApiError::bad_request(format!(
                "unknown model {model:?}; GET /api/models lists them"
            )));
        }
        Ok(model.to_owned())
    }

    /// A message `user` owns, whole, with where it lives.
    async fn owned_message(
        &self,
        user: &UserId,
        message_id: Uuid,
    ) -> Result<(MessageInfo, Message), ApiError> {
        let engine = &self.context.engine;
        let info = match engine.message(message_id).await {
            Ok(Some(info)) => info,
            Ok(None) => return Err(ApiError::not_found("message")),
            Err(e) => return Err(e.into_api("message")),
        };
        if info.owner != *user {
            return Err(ApiError::forbidden("message"));
        }
        match engine.message_at(info.conversation_id, message_id).await {
            Ok(Some((_, message))) => Ok((info, message)),
            Ok(None) => Err(ApiError::not_found("message")),
            Err(e) => Err(e.into_api("message")),
        }
    }

    /// Starts a turn of any kind (or answers a resend) and its reply's
    /// generation.
    async fn start_turn(&self, request: TurnRequest) -> Result<Turn, ApiError> {
        let model = request.model.clone();
        let turn = self
            .context
            .engine
            .start_turn(request)
            .await
            .map_err(|e| e.into_api("conversation"))?;
        if turn.started {
            metrics::counter!("chatstream_turns_total").increment(1);
            self.generations
                .cast(GenerationsMsg::Start(GenerationSpec {
                    conversation_id: turn.ack.conversation_id,
                    message_id: turn.ack.assistant_message_id,
                    model,
                }))
                .map_err(|_| ApiError::unavailable("the node is stopping"))?;
        }
        Ok(turn)
    }

    /// Stops a streaming reply; its text so far is kept.
    pub async fn cancel(&self, user: UserId, message_id: Uuid) -> Result<(), ApiError> {
        let info = match self.context.engine.message(message_id).await {
            Ok(Some(info)) => info,
            Ok(None) => return Err(ApiError::not_found("message")),
            Err(e) => return Err(e.into_api("message")),
        };
        if info.owner != user {
            return Err(ApiError::forbidden("message"));
        }
        if info.role != Role::Assistant {
            return Err(ApiError::conflict(
                "only an assistant reply can be cancelled",
            ));
        }
        if info.status != MessageStatus::Streaming {
            return Err(ApiError::conflict("the reply is no longer streaming"));
        }
        let call = self.generations.call(
            |reply| GenerationsMsg::Cancel {
                conversation_id: info.conversation_id,
                message_id,
                reply,
            },
            Some(super::CALL_TIMEOUT),
        );
        match call.await {
            Ok(CallResult::Success(result)) => result,
            _ => Err(ApiError::unavailable("the node is stopping")),
        }
    }

    /// Deletes a conversation: its running reply stops, its subscribers are
    /// unsubscribed, and its id is forgotten.
    pub async fn delete(&self, user: UserId, id: Uuid) -> Result<(), ApiError> {
        self.owned_conversation(user, id).await?;
        let engine = &self.context.engine;
        let snapshot = engine
            .snapshot(id)
            .await
            .map_err(|e| e.into_api("conversation"))?;
        let streaming: Vec<Uuid> = snapshot
            .messages
            .iter()
            .filter(|m| m.status == MessageStatus::Streaming)
            .map(|m| m.id)
            .collect();
        // Found before the delete forgets who generates them.
        for message_id in &streaming {
            if let Err(error) = engine.stop_remote_generation(id, *message_id).await {
                tracing::warn!(%message_id, %error, "could not stop a remote generation");
            }
        }
        engine
            .delete_conversation(id)
            .await
            .map_err(|e| e.into_api("conversation"))?;
        for message_id in streaming {
            let _ = self.generations.cast(GenerationsMsg::Abort { message_id });
        }
        Ok(())
    }
}

/// A reply without the user message it answers: only in a log written
/// before replies named their parent and not yet read whole since.
fn no_question() -> ApiError {
    ApiError::conflict("this reply has no question to answer again")
}

/// The longest conversation title, in Unicode scalar values.
pub const MAX_TITLE_CHARS: usize = 200;
/// The largest listing page; a larger `limit` is treated as this.
pub const MAX_PAGE: usize = 200;
/// The most results one search answers.
pub const MAX_SEARCH_RESULTS: usize = 50;
/// The longest search query, in characters.
const MAX_QUERY_CHARS: usize = 500;

/// The contract's error for a store failure; the detail goes to the log.
fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::InvalidCursor => ApiError::bad_request("invalid cursor"),
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "the durable store is unavailable");
            ApiError::unavailable("history is temporarily unavailable; retry")
        }
        StoreError::Internal(detail) => {
            tracing::error!(%detail, "the durable store failed");
            ApiError::internal("history could not be read")
        }
    }
}
