//! Deep-dive chat sessions: start, list, read and close sessions, and send messages whose
//! answers stream token by token from the provider router (the same chain, breakers, rate
//! limits, budgets and usage rows as tasks).
//!
//! Files: `turn.rs` sends a message (the turn lock, the prompt, the streamed call, the
//! stored turn); `expiry.rs` is the background job that expires idle sessions; `error.rs`
//! is [`ChatError`].

mod error;
mod expiry;
mod turn;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock;
use crate::domain::chat::{
    ChatMessage, ChatSession, ChatSessionId, ChatStatus, ContextWindow, ItemId, SessionPageRequest,
};
use crate::domain::{Page, UserId};
use crate::execution::AttemptRecorder;
use crate::providers::Router;
use crate::ratelimit::{Rate, RateLimiter};
use crate::store::EventPublisher;
use crate::store::chat::ChatStore;

pub use error::ChatError;
pub use expiry::{ChatExpiry, EXPIRY_JOB, ExpiryPass};
pub use turn::{ChatEvent, ChatReply};

/// Most messages one GetSession page returns.
pub const MAX_MESSAGE_PAGE: u32 = 500;

/// The limits of chat sessions.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Messages one session holds at most (`CHAT_MAX_MESSAGES`; seed 000's
    /// MaxMessagesReached).
    pub max_messages: u32,
    /// Sessions idle longer are expired (`CHAT_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
    /// Messages one user may send (`CHAT_USER_MESSAGE_RATE`); `None` for no limit.
    pub user_message_rate: Option<Rate>,
    /// The model's context window the prompt is trimmed to (`CHAT_CONTEXT_TOKENS`,
    /// `CHAT_MAX_ANSWER_TOKENS`).
    pub window: ContextWindow,
    /// Longest one answer may take, fallbacks included; the turn lock lasts a little longer.
    pub turn_timeout: Duration,
}

/// Everything a [`ChatService`] is built from.
pub struct ChatParts {
    /// Sessions and messages.
    pub store: Arc<dyn ChatStore>,
    /// Providers behind breakers, limits and budgets (with the development provider when no
    /// real chat provider is configured).
    pub router: Router,
    /// The providers asked, in order (`PROVIDER_CHAIN_CHAT`, else every chat provider by
    /// priority).
    pub chain: Vec<String>,
    /// The per-user message rate.
    pub limiter: Arc<dyn RateLimiter>,
    /// Where provider attempts (usage rows) go.
    pub recorder: Option<AttemptRecorder>,
    /// The bus: answers being written also reach the user's notification streams (WebSocket,
    /// SSE, gRPC) on every instance, as live-only `ChatDelta` and `ChatDone` events.
    pub live: Option<Arc<dyn EventPublisher>>,
    /// Limits.
    pub settings: ChatSettings,
    /// Tracks running answers, so shutdown waits for them.
    pub tracker: TaskTracker,
    /// Cancelled at shutdown: running answers stop and store nothing.
    pub shutdown: CancellationToken,
}

/// The chat use cases.
#[derive(Clone)]
pub struct ChatService {
    inner: Arc<ChatParts>,
}

impl ChatService {
    /// A service from its parts.
    pub fn new(parts: ChatParts) -> Self {
        Self {
            inner: Arc::new(parts),
        }
    }

    /// The limits.
    pub fn settings(&self) -> &ChatSettings {
        &self.inner.settings
    }

    /// The provider chain answers come from.
    pub fn chain(&self) -> &[String] {
        &self.inner.chain
    }

    /// Starts a session about `item` for `user`, or returns the active one (whose context is
    /// kept). Whether it was created.
    pub async fn start_session(
        &self,
        user: &UserId,
        item: &str,
        context: Value,
    ) -> Result<(ChatSession, bool), ChatError> {
        let item = ItemId::parse(item)?;
        let session = ChatSession::start(user.clone(), item, context, clock::now())?;
        Ok(self.inner.store.start(session).await?)
    }

    /// `user`'s session `id`: not found when it is someone else's.
    pub async fn session(&self, user: &UserId, id: &str) -> Result<ChatSession, ChatError> {
        let parsed =
            ChatSessionId::parse(id).map_err(|_| ChatError::NotFound(id.trim().to_owned()))?;
        match self.inner.store.find_by_id(parsed).await? {
            Some(s) if &s.user_id == user => Ok(s),
            _ => Err(ChatError::NotFound(parsed.to_string())),
        }
    }

    /// `user`'s session `id` and up to `limit` of its messages after place `after_seq`.
    pub async fn session_with_messages(
        &self,
        user: &UserId,
        id: &str,
        after_seq: u32,
        limit: u32,
    ) -> Result<(ChatSession, Vec<ChatMessage>), ChatError> {
        if limit > MAX_MESSAGE_PAGE {
            return Err(ChatError::Invalid(format!(
                "page_size must be at most {MAX_MESSAGE_PAGE}"
            )));
        }
        let limit = if limit == 0 { MAX_MESSAGE_PAGE } else { limit };
        let session = self.session(user, id).await?;
        let messages = self
            .inner
            .store
            .messages(session.id, after_seq, limit)
            .await?;
        Ok((session, messages))
    }

    /// `user`'s sessions, newest first.
    pub async fn list_sessions(
        &self,
        user: &UserId,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<ChatSession>, ChatError> {
        let page = SessionPageRequest::parse(page_size, page_token)?;
        Ok(self.inner.store.find_by_user_paginated(user, &page).await?)
    }

    /// Closes `user`'s session `id` (seed 000's logical delete: it is no longer found or
    /// listed, so a second close answers not found).
    pub async fn close_session(&self, user: &UserId, id: &str) -> Result<ChatSession, ChatError> {
        let mut session = self.session(user, id).await?;
        if !self.inner.store.delete(session.id, clock::now()).await? {
            return Err(ChatError::NotFound(session.id.to_string()));
        }
        if session.status == ChatStatus::Active {
            session.status = ChatStatus::Closed;
        }
        Ok(session)
    }
}
