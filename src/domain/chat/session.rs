//! The chat session aggregate: who talks about which item, in which state, since when.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::ids::time_ordered_id;
use crate::domain::{DomainError, UserId};

/// Largest item context, as JSON: it is sent with every turn, so it must stay well inside any
/// model's context window.
pub const MAX_CONTEXT_BYTES: usize = 16 * 1024;

time_ordered_id!(
    /// A chat session's id: a UUID v7, so ids sort by start time.
    ChatSessionId,
    "session_id"
);

/// The item a conversation is about (a word, an article, a menu entry): the caller's own id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemId(String);

impl ItemId {
    /// Longest accepted item id, matching seed 001's `item_id VARCHAR(100)`.
    pub const MAX_LEN: usize = 100;

    /// Validates an item id: 1 to 100 characters, no control characters.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(DomainError::Invalid("item_id must not be empty".into()));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(DomainError::Invalid(format!(
                "item_id must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(DomainError::Invalid(
                "item_id must not contain control characters".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a session is in its life. Only an active session takes messages; the other two are
/// final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatStatus {
    /// Taking messages.
    Active,
    /// Closed by its user (or deleted).
    Closed,
    /// Idle longer than `CHAT_IDLE_TIMEOUT`, closed by the expiry job.
    Expired,
}

impl ChatStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Closed => "closed",
            Self::Expired => "expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        [Self::Active, Self::Closed, Self::Expired]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| DomainError::Invalid(format!("unknown chat status {s:?}")))
    }
}

impl fmt::Display for ChatStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session cannot take another turn now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnRefusal {
    /// Closed or expired sessions take no messages.
    #[error("chat session {id} is {status}; start a new session to keep talking")]
    NotActive {
        /// The session.
        id: ChatSessionId,
        /// Its state.
        status: ChatStatus,
    },
    /// Seed 000's MaxMessagesReached: the session holds its maximum of messages.
    #[error(
        "chat session {id} holds its maximum of {max} messages (CHAT_MAX_MESSAGES); close it and start a new one"
    )]
    MaxMessagesReached {
        /// The session.
        id: ChatSessionId,
        /// The maximum.
        max: u32,
    },
}

/// One user's conversation about one item (seed 000's ChatSession).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSession {
    /// Its id.
    #[serde(rename = "session_id")]
    pub id: ChatSessionId,
    /// Whose it is; nobody else may read or write it.
    pub user_id: UserId,
    /// What it is about.
    pub item_id: ItemId,
    /// Where it is in its life.
    pub status: ChatStatus,
    /// What the caller told us about the item (a JSON object, or null), sent with every turn.
    pub context: Value,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When its last message was stored (or it started); the expiry job measures idleness
    /// from here.
    pub last_activity: DateTime<Utc>,
    /// Messages stored (a turn is two: the question and its answer).
    pub message_count: u32,
}

impl ChatSession {
    /// A new active session; `context` must be a JSON object or null, at most
    /// [`MAX_CONTEXT_BYTES`].
    pub fn start(
        user_id: UserId,
        item_id: ItemId,
        context: Value,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        if !(context.is_object() || context.is_null()) {
            return Err(DomainError::Invalid(
                "context must be a JSON object (or absent)".into(),
            ));
        }
        if context.to_string().len() > MAX_CONTEXT_BYTES {
            return Err(DomainError::TooLarge(format!(
                "context must be at most {MAX_CONTEXT_BYTES} bytes as JSON"
            )));
        }
        Ok(Self {
            id: ChatSessionId::new(),
            user_id,
            item_id,
            status: ChatStatus::Active,
            context,
            started_at: now,
            last_activity: now,
            message_count: 0,
        })
    }

    /// Whether a turn (two more messages) may start, with at most `max_messages` in all.
    pub fn check_turn(&self, max_messages: u32) -> Result<(), TurnRefusal> {
        if self.status != ChatStatus::Active {
            return Err(TurnRefusal::NotActive {
                id: self.id,
                status: self.status,
            });
        }
        if self.message_count.saturating_add(2) > max_messages {
            return Err(TurnRefusal::MaxMessagesReached {
                id: self.id,
                max: max_messages,
            });
        }
        Ok(())
    }

    /// Whether it has been idle longer than `idle` at `now`.
    pub fn is_idle(&self, idle: std::time::Duration, now: DateTime<Utc>) -> bool {
        let idle = chrono::TimeDelta::from_std(idle).unwrap_or(chrono::TimeDelta::MAX);
        self.status == ChatStatus::Active && now - self.last_activity > idle
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn session(count: u32) -> ChatSession {
        let mut s = ChatSession::start(
            UserId::parse("u").unwrap(),
            ItemId::parse("word:apple").unwrap(),
            json!({"word": "apple"}),
            Utc::now(),
        )
        .unwrap();
        s.message_count = count;
        s
    }

    #[test]
    fn item_ids_and_context_are_checked() {
        assert!(ItemId::parse(" ").is_err());
        assert!(ItemId::parse(&"x".repeat(101)).is_err());
        assert_eq!(ItemId::parse(" a ").unwrap().as_str(), "a");
        let user = UserId::parse("u").unwrap();
        let item = ItemId::parse("a").unwrap();
        let err = ChatSession::start(user.clone(), item.clone(), json!([1]), Utc::now());
        assert!(err.unwrap_err().to_string().contains("context"));
        let big = json!({"text": "x".repeat(MAX_CONTEXT_BYTES)});
        assert!(matches!(
            ChatSession::start(user, item, big, Utc::now()),
            Err(DomainError::TooLarge(_))
        ));
    }

    #[test]
    fn a_turn_needs_an_active_session_with_room_for_two_messages() {
        assert_eq!(session(0).check_turn(2), Ok(()));
        let full = session(2);
        assert!(matches!(
            full.check_turn(3),
            Err(TurnRefusal::MaxMessagesReached { max: 3, .. })
        ));
        let mut closed = session(0);
        closed.status = ChatStatus::Closed;
        let err = closed.check_turn(10).unwrap_err();
        assert!(err.to_string().contains("is closed"), "{err}");
    }

    #[test]
    fn idleness_counts_from_the_last_activity() {
        let s = session(0);
        let later = s.last_activity + chrono::TimeDelta::seconds(61);
        assert!(s.is_idle(std::time::Duration::from_secs(60), later));
        assert!(!s.is_idle(std::time::Duration::from_secs(120), later));
    }
}
