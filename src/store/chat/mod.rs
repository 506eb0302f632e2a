//! Chat sessions and their messages (seed 000's ChatSessionRepository, seed 001's tables):
//! the [`ChatStore`] port and its SQL implementation, one for PostgreSQL and SQLite alike.
//!
//! The database enforces what must hold across instances: at most one active session per
//! user and item (a partial unique index, so concurrent starts race safely), one turn
//! answered at a time per session (a lock column taken by compare-and-set, which lapses if its
//! holder dies), and a turn's question and answer stored together or not at all.
//!
//! Files: `sql.rs` is [`SqlChatStore`] and the session queries; `turns.rs` the turn lock and
//! the messages; `rows.rs` reads rows back. Tables: `migrations/*/…_chat.sql`.

mod rows;
mod sql;
mod turns;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::chat::{
    ChatMessage, ChatSession, ChatSessionId, IdempotencyKey, ItemId, SessionPageRequest, Turn,
};
use crate::domain::{Page, UserId};

use super::StoreError;

pub use sql::{PgChatStore, SqlChatStore, SqliteChatStore};

/// Why a session could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum ChatStoreError {
    /// Another active session exists for the same user and item.
    #[error("an active chat session already exists for this user and item")]
    ActiveSessionExists,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ChatStoreError {
    fn from(e: sqlx::Error) -> Self {
        if matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()) {
            Self::ActiveSessionExists
        } else {
            Self::Store(e.into())
        }
    }
}

/// The answer to [`ChatStore::begin_turn`].
#[derive(Debug, Clone, PartialEq)]
pub enum TurnLock {
    /// The caller holds the session's turn lock until it finishes, releases, or the lock
    /// lapses; the session as it stands.
    Taken(ChatSession),
    /// Another message of this session is being answered.
    Busy,
    /// No such session (or deleted); whose it is is the caller's to check before.
    Missing,
}

/// Chat sessions and messages.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    // ===== Seed 000's ChatSessionRepository =====

    /// The session `id`, unless deleted.
    async fn find_by_id(&self, id: ChatSessionId) -> Result<Option<ChatSession>, StoreError>;

    /// Inserts `session`, or updates its status, context, last activity and message count.
    /// Refused when it would make a second active session for its user and item.
    async fn save(&self, session: &ChatSession) -> Result<(), ChatStoreError>;

    /// Deletes `id` logically: it is closed and no query finds it again. Whether it existed.
    async fn delete(&self, id: ChatSessionId, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// `user`'s active sessions, most recently active first.
    async fn find_active_by_user(&self, user: &UserId) -> Result<Vec<ChatSession>, StoreError>;

    /// `user`'s active session about `item`, if any (there is at most one).
    async fn find_by_user_and_item(
        &self,
        user: &UserId,
        item: &ItemId,
    ) -> Result<Option<ChatSession>, StoreError>;

    /// `user`'s sessions in every state, newest first, one page.
    async fn find_by_user_paginated(
        &self,
        user: &UserId,
        page: &SessionPageRequest,
    ) -> Result<Page<ChatSession>, StoreError>;

    // ===== What the chat service needs besides =====

    /// Stores `session` unless its user already has an active one about its item: then that
    /// one is returned instead. Whether `session` was created. Safe under concurrent starts.
    async fn start(&self, session: ChatSession) -> Result<(ChatSession, bool), StoreError>;

    /// Takes `id`'s turn lock for `holder` until `until`, if no other holder's lock is live at
    /// `now`.
    async fn begin_turn(
        &self,
        id: ChatSessionId,
        holder: Uuid,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TurnLock, StoreError>;

    /// Stores `turn` (its two messages at the session's next places), counts them, marks the
    /// session active at `now` and releases the lock, in one transaction: only if `holder`
    /// still holds the lock and the session is active. Whether it was stored.
    async fn finish_turn(
        &self,
        holder: Uuid,
        turn: &Turn,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Releases `id`'s turn lock if `holder` holds it (the turn failed; nothing is stored).
    async fn release_turn(&self, id: ChatSessionId, holder: Uuid) -> Result<(), StoreError>;

    /// The stored turn of `id` sent with `key`, if any.
    async fn find_turn(
        &self,
        id: ChatSessionId,
        key: &IdempotencyKey,
    ) -> Result<Option<Turn>, StoreError>;

    /// Up to `limit` messages of `id` after place `after_seq`, in order.
    async fn messages(
        &self,
        id: ChatSessionId,
        after_seq: u32,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StoreError>;

    /// Expires up to `limit` active sessions whose last activity is before `idle_before` and
    /// that no live turn holds at `now`. The sessions expired.
    async fn expire_idle(
        &self,
        idle_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ChatSession>, StoreError>;

    /// Takes or renews the lease of background job `name` for `owner` until `until`, if it is
    /// free, lapsed at `now`, or `owner`'s already. Whether `owner` holds it.
    async fn acquire_job_lease(
        &self,
        name: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Gives the lease of `name` up, if `owner` holds it.
    async fn release_job_lease(&self, name: &str, owner: &str) -> Result<(), StoreError>;
}
