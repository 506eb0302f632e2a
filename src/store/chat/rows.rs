//! Rows read back as chat values; a row that does not parse is corrupt, never a panic.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::chat::{
    ChatMessage, ChatRole, ChatSession, ChatSessionId, ChatStatus, IdempotencyKey, ItemId,
};
use crate::domain::{Micros, UserId};
use crate::store::StoreError;

/// The columns of a session, in [`SessionRow`] order.
pub(super) const SESSION_COLUMNS: &str =
    "session_id, user_id, item_id, status, context, started_at, last_activity, message_count";

/// A `chat_sessions` row.
pub(super) type SessionRow = (
    Uuid,
    String,
    String,
    String,
    Option<Json<Value>>,
    DateTime<Utc>,
    DateTime<Utc>,
    i32,
);

/// The columns of a message, in [`MessageRow`] order.
pub(super) const MESSAGE_COLUMNS: &str = "message_id, session_id, seq, role, content, \
     tokens_used, provider, model, cost_micros, idempotency_key, created_at";

/// A `chat_messages` row.
pub(super) type MessageRow = (
    Uuid,
    Uuid,
    i32,
    String,
    String,
    i32,
    Option<String>,
    Option<String>,
    i64,
    String,
    DateTime<Utc>,
);

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A stored count (never negative in a sound database).
fn count(n: i32, what: &str) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt(what, n))
}

/// A session row as the aggregate.
pub(super) fn session(r: SessionRow) -> Result<ChatSession, StoreError> {
    let (id, user, item, status, context, started_at, last_activity, messages) = r;
    Ok(ChatSession {
        id: ChatSessionId::from_uuid(id),
        user_id: UserId::parse(&user).map_err(|e| corrupt("chat session user", e))?,
        item_id: ItemId::parse(&item).map_err(|e| corrupt("chat session item", e))?,
        status: ChatStatus::parse(&status).map_err(|e| corrupt("chat session status", e))?,
        context: context.map_or(Value::Null, |Json(v)| v),
        started_at,
        last_activity,
        message_count: count(messages, "message count")?,
    })
}

/// A message row as the message and the key its turn was sent with.
pub(super) fn message(r: MessageRow) -> Result<(ChatMessage, IdempotencyKey), StoreError> {
    let (id, session, seq, role, content, tokens, provider, model, cost, key, created_at) = r;
    Ok((
        ChatMessage {
            id,
            session_id: ChatSessionId::from_uuid(session),
            seq: count(seq, "message seq")?,
            role: ChatRole::parse(&role).map_err(|e| corrupt("chat message role", e))?,
            content,
            tokens_used: count(tokens, "tokens used")?,
            provider,
            model,
            cost_micros: Micros(cost),
            created_at,
        },
        IdempotencyKey::parse(&key).map_err(|e| corrupt("chat message key", e))?,
    ))
}

/// The context as stored: SQL NULL for JSON null.
pub(super) fn stored_context(session: &ChatSession) -> Option<Json<Value>> {
    (!session.context.is_null()).then(|| Json(session.context.clone()))
}
