//! [`ChatStore`] for every database the shared SQL serves: the session queries here, the turn
//! lock and the messages in `turns.rs`.
//!
//! Statements use `$1`-style parameters, which both drivers bind by number.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Executor, Pool, Postgres, Sqlite};
use uuid::Uuid;

use super::rows::{self, SESSION_COLUMNS, SessionRow};
use super::{ChatStore, ChatStoreError, TurnLock};
use crate::domain::chat::{
    ChatMessage, ChatSession, ChatSessionId, IdempotencyKey, ItemId, SessionCursor,
    SessionPageRequest, Turn,
};
use crate::domain::{Page, UserId};
use crate::store::sql::{Bind, Column, Dialect, RowsAffected};
use crate::store::{PgTaskStore, SqliteTaskStore, StoreError};

/// Chat in PostgreSQL (clustered mode).
pub type PgChatStore = SqlChatStore<Postgres>;
/// Chat in SQLite (embedded mode).
pub type SqliteChatStore = SqlChatStore<Sqlite>;

/// Chat sessions on a task store's connections (make one with [`PgTaskStore::chat_store`] or
/// [`SqliteTaskStore::chat_store`]).
#[derive(Clone)]
pub struct SqlChatStore<DB: sqlx::Database> {
    /// For reads.
    pub(super) reads: Pool<DB>,
    /// For writes: in SQLite the one writer connection shared with the other stores, so a
    /// write waits its turn instead of meeting `SQLITE_BUSY`.
    pub(super) writes: Pool<DB>,
}

/// How a database opens a write transaction.
pub(super) trait ChatDialect: Dialect {
    /// SQLite takes the write lock at once, so a transaction never fails to upgrade it.
    const BEGIN_WRITE: &'static str;
}

impl ChatDialect for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
}

impl ChatDialect for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
}

/// A count as a bound parameter.
pub(super) fn signed(n: u32) -> i64 {
    i64::from(n)
}

const NOT_DELETED: &str = "deleted_at IS NULL";

#[async_trait]
impl<DB> ChatStore for SqlChatStore<DB>
where
    DB: ChatDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    Option<Uuid>: Bind<DB>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Option<Json<Value>>: Column<DB>,
{
    async fn find_by_id(&self, id: ChatSessionId) -> Result<Option<ChatSession>, StoreError> {
        let row: Option<SessionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM chat_sessions WHERE session_id = $1 AND {NOT_DELETED}"
        )))
        .bind(id.as_uuid())
        .fetch_optional(&self.reads)
        .await?;
        row.map(rows::session).transpose()
    }

    async fn save(&self, session: &ChatSession) -> Result<(), ChatStoreError> {
        sqlx::query(
            "INSERT INTO chat_sessions (session_id, user_id, item_id, status, context, \
             started_at, last_activity, message_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (session_id) DO UPDATE SET status = excluded.status, \
             context = excluded.context, last_activity = excluded.last_activity, \
             message_count = excluded.message_count",
        )
        .bind(session.id.as_uuid())
        .bind(session.user_id.as_str())
        .bind(session.item_id.as_str())
        .bind(session.status.as_str())
        .bind(rows::stored_context(session))
        .bind(session.started_at)
        .bind(session.last_activity)
        .bind(signed(session.message_count))
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn delete(&self, id: ChatSessionId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE chat_sessions SET deleted_at = $1, \
             status = CASE WHEN status = 'active' THEN 'closed' ELSE status END, \
             turn_holder = NULL, turn_until = NULL \
             WHERE session_id = $2 AND {NOT_DELETED}"
        )))
        .bind(now)
        .bind(id.as_uuid())
        .execute(&self.writes)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn find_active_by_user(&self, user: &UserId) -> Result<Vec<ChatSession>, StoreError> {
        let found: Vec<SessionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM chat_sessions \
             WHERE user_id = $1 AND status = 'active' AND {NOT_DELETED} \
             ORDER BY last_activity DESC, session_id DESC"
        )))
        .bind(user.as_str())
        .fetch_all(&self.reads)
        .await?;
        found.into_iter().map(rows::session).collect()
    }

    async fn find_by_user_and_item(
        &self,
        user: &UserId,
        item: &ItemId,
    ) -> Result<Option<ChatSession>, StoreError> {
        let row: Option<SessionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM chat_sessions \
             WHERE user_id = $1 AND item_id = $2 AND status = 'active' AND {NOT_DELETED}"
        )))
        .bind(user.as_str())
        .bind(item.as_str())
        .fetch_optional(&self.reads)
        .await?;
        row.map(rows::session).transpose()
    }

    async fn find_by_user_paginated(
        &self,
        user: &UserId,
        page: &SessionPageRequest,
    ) -> Result<Page<ChatSession>, StoreError> {
        // One more than asked, to know whether a next page exists.
        let limit = i64::from(page.size) + 1;
        let found: Vec<SessionRow> = match page.after {
            None => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SESSION_COLUMNS} FROM chat_sessions WHERE user_id = $1 AND {NOT_DELETED} \
                 ORDER BY started_at DESC, session_id DESC LIMIT $2"
            )))
            .bind(user.as_str())
            .bind(limit)
            .fetch_all(&self.reads)
            .await?,
            Some(after) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SESSION_COLUMNS} FROM chat_sessions WHERE user_id = $1 AND {NOT_DELETED} \
                 AND (started_at < $2 OR (started_at = $2 AND session_id < $3)) \
                 ORDER BY started_at DESC, session_id DESC LIMIT $4"
            )))
            .bind(user.as_str())
            .bind(after.started_at)
            .bind(after.id.as_uuid())
            .bind(limit)
            .fetch_all(&self.reads)
            .await?,
        };
        let mut items = found
            .into_iter()
            .map(rows::session)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = if items.len() > page.size as usize {
            items.truncate(page.size as usize);
            items.last().map(|s| {
                SessionCursor {
                    started_at: s.started_at,
                    id: s.id,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn start(&self, session: ChatSession) -> Result<(ChatSession, bool), StoreError> {
        // A lost race finds the winner's session; it can itself be closed before we read it,
        // hence a few rounds.
        for _ in 0..5 {
            match self.save(&session).await {
                Ok(()) => return Ok((session, true)),
                Err(ChatStoreError::Store(e)) => return Err(e),
                Err(ChatStoreError::ActiveSessionExists) => {}
            }
            if let Some(existing) = self
                .find_by_user_and_item(&session.user_id, &session.item_id)
                .await?
            {
                return Ok((existing, false));
            }
        }
        Err(StoreError::Corrupt(
            "an active chat session kept appearing and vanishing".into(),
        ))
    }

    async fn begin_turn(
        &self,
        id: ChatSessionId,
        holder: Uuid,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TurnLock, StoreError> {
        self.take_turn_lock(id, holder, until, now).await // turns.rs
    }

    async fn finish_turn(
        &self,
        holder: Uuid,
        turn: &Turn,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.store_turn(holder, turn, now).await // turns.rs
    }

    async fn release_turn(&self, id: ChatSessionId, holder: Uuid) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE chat_sessions SET turn_holder = NULL, turn_until = NULL \
             WHERE session_id = $1 AND turn_holder = $2",
        )
        .bind(id.as_uuid())
        .bind(holder)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn find_turn(
        &self,
        id: ChatSessionId,
        key: &IdempotencyKey,
    ) -> Result<Option<Turn>, StoreError> {
        self.turn_by_key(id, key).await // turns.rs
    }

    async fn messages(
        &self,
        id: ChatSessionId,
        after_seq: u32,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.messages_after(id, after_seq, limit).await // turns.rs
    }

    async fn expire_idle(
        &self,
        idle_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ChatSession>, StoreError> {
        // The outer conditions repeat the inner ones: PostgreSQL re-checks them on a row a
        // concurrent turn changed meanwhile, so a session that just got a message stays.
        let idle = "status = 'active' AND deleted_at IS NULL AND last_activity < $1 \
                    AND (turn_until IS NULL OR turn_until < $2)";
        let expired: Vec<SessionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE chat_sessions SET status = 'expired' WHERE {idle} AND session_id IN \
             (SELECT session_id FROM chat_sessions WHERE {idle} ORDER BY last_activity LIMIT $3) \
             RETURNING {SESSION_COLUMNS}"
        )))
        .bind(idle_before)
        .bind(now)
        .bind(signed(limit))
        .fetch_all(&self.writes)
        .await?;
        expired.into_iter().map(rows::session).collect()
    }

    async fn acquire_job_lease(
        &self,
        name: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO job_leases (name, owner, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
             lease_until = excluded.lease_until \
             WHERE job_leases.owner = excluded.owner OR job_leases.lease_until < $4",
        )
        .bind(name)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(&self.writes)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_job_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM job_leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&self.writes)
            .await?;
        Ok(())
    }
}

impl<DB: sqlx::Database> SqlChatStore<DB> {
    /// The store on `reads` and `writes`.
    fn on(reads: &Pool<DB>, writes: &Pool<DB>) -> Self {
        Self {
            reads: reads.clone(),
            writes: writes.clone(),
        }
    }
}

impl PgTaskStore {
    /// Chat sessions on this store's connections.
    pub fn chat_store(&self) -> PgChatStore {
        let sql = crate::store::sql::SqlStore::sql(self);
        SqlChatStore::on(sql.reads, sql.writes)
    }
}

impl SqliteTaskStore {
    /// Chat sessions on this store's connections (its readers, and its one writer).
    pub fn chat_store(&self) -> SqliteChatStore {
        let sql = crate::store::sql::SqlStore::sql(self);
        SqlChatStore::on(sql.reads, sql.writes)
    }
}
