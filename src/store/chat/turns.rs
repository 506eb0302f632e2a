//! The turn lock and the messages: a turn's two messages are written in the transaction that
//! counts them and releases the lock, and only by the lock's holder.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Executor;
use sqlx::types::Json;
use uuid::Uuid;

use super::TurnLock;
use super::rows::{self, MESSAGE_COLUMNS, MessageRow, SESSION_COLUMNS, SessionRow};
use super::sql::{ChatDialect, SqlChatStore, signed};
use crate::domain::chat::{ChatMessage, ChatRole, ChatSessionId, IdempotencyKey, Turn};
use crate::store::StoreError;
use crate::store::sql::{Bind, Column};

// The methods are `pub(super)`; the bounds name crate-private traits, which is fine here.
#[allow(private_bounds)]
impl<DB> SqlChatStore<DB>
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
    /// [`ChatStore::begin_turn`](super::ChatStore::begin_turn).
    pub(super) async fn take_turn_lock(
        &self,
        id: ChatSessionId,
        holder: Uuid,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TurnLock, StoreError> {
        let taken: Option<SessionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE chat_sessions SET turn_holder = $1, turn_until = $2 \
             WHERE session_id = $3 AND deleted_at IS NULL \
             AND (turn_holder IS NULL OR turn_until < $4) RETURNING {SESSION_COLUMNS}"
        )))
        .bind(holder)
        .bind(until)
        .bind(id.as_uuid())
        .bind(now)
        .fetch_optional(&self.writes)
        .await?;
        if let Some(row) = taken {
            return Ok(TurnLock::Taken(rows::session(row)?));
        }
        let exists: Option<(i32,)> = sqlx::query_as(
            "SELECT 1 FROM chat_sessions WHERE session_id = $1 AND deleted_at IS NULL",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.reads)
        .await?;
        Ok(if exists.is_some() {
            TurnLock::Busy
        } else {
            TurnLock::Missing
        })
    }

    /// [`ChatStore::finish_turn`](super::ChatStore::finish_turn).
    pub(super) async fn store_turn(
        &self,
        holder: Uuid,
        turn: &Turn,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let session = turn.question.session_id;
        let mut tx = self.writes.begin_with(DB::BEGIN_WRITE).await?;
        let counted: Option<(i32,)> = sqlx::query_as(
            "UPDATE chat_sessions SET message_count = message_count + 2, last_activity = $1, \
             turn_holder = NULL, turn_until = NULL \
             WHERE session_id = $2 AND turn_holder = $3 AND status = 'active' \
             AND deleted_at IS NULL RETURNING message_count",
        )
        .bind(now)
        .bind(session.as_uuid())
        .bind(holder)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((count,)) = counted else {
            tx.rollback().await?;
            return Ok(false);
        };
        // The places follow the count just taken under the row's lock, whatever the turn
        // was built with.
        let first = count - 1;
        for (message, seq) in [(&turn.question, first), (&turn.answer, count)] {
            sqlx::query(
                "INSERT INTO chat_messages (message_id, session_id, seq, role, content, \
                 tokens_used, provider, model, cost_micros, idempotency_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(message.id)
            .bind(session.as_uuid())
            .bind(seq)
            .bind(message.role.as_str())
            .bind(message.content.as_str())
            .bind(i32::try_from(message.tokens_used).unwrap_or(i32::MAX))
            .bind(message.provider.clone())
            .bind(message.model.clone())
            .bind(message.cost_micros.0)
            .bind(turn.idempotency_key.as_str())
            .bind(message.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// [`ChatStore::find_turn`](super::ChatStore::find_turn).
    pub(super) async fn turn_by_key(
        &self,
        id: ChatSessionId,
        key: &IdempotencyKey,
    ) -> Result<Option<Turn>, StoreError> {
        let found: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages \
             WHERE session_id = $1 AND idempotency_key = $2 ORDER BY seq"
        )))
        .bind(id.as_uuid())
        .bind(key.as_str())
        .fetch_all(&self.reads)
        .await?;
        let mut question = None;
        let mut answer = None;
        for row in found {
            let (m, _) = rows::message(row)?;
            match m.role {
                ChatRole::User => question = Some(m),
                ChatRole::Assistant => answer = Some(m),
            }
        }
        Ok(match (question, answer) {
            (Some(question), Some(answer)) => Some(Turn {
                idempotency_key: key.clone(),
                question,
                answer,
            }),
            (None, None) => None,
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "chat session {id} holds half a turn for one key"
                )));
            }
        })
    }

    /// [`ChatStore::messages`](super::ChatStore::messages).
    pub(super) async fn messages_after(
        &self,
        id: ChatSessionId,
        after_seq: u32,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let found: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages \
             WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        )))
        .bind(id.as_uuid())
        .bind(signed(after_seq))
        .bind(signed(limit))
        .fetch_all(&self.reads)
        .await?;
        found
            .into_iter()
            .map(|r| rows::message(r).map(|(m, _)| m))
            .collect()
    }
}
