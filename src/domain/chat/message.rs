//! Messages of a chat session, and the turn (a question and its answer) stored as one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ChatSessionId;
use crate::domain::{DomainError, Micros};

/// Longest question a user may send, in characters.
pub const MAX_MESSAGE_CHARS: usize = 8_000;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    /// The session's user.
    User,
    /// The model.
    Assistant,
}

impl ChatRole {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            other => Err(DomainError::Invalid(format!("unknown chat role {other:?}"))),
        }
    }
}

/// The key a client sends with a question so that sending it again (after a broken answer,
/// or a lost response) does not add a second turn.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest accepted key.
    pub const MAX_LEN: usize = 100;

    /// Validates a key: 1 to 100 printable characters.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > Self::MAX_LEN || s.chars().any(char::is_control) {
            return Err(DomainError::Invalid(format!(
                "idempotency_key must be 1 to {} printable characters",
                Self::MAX_LEN
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// A key for a question sent without one (unique, so it never matches another).
    pub fn generated() -> Self {
        Self(format!("auto-{}", Uuid::now_v7()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One stored message (seed 001's chat_messages row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Its id.
    #[serde(rename = "message_id")]
    pub id: Uuid,
    /// The session it belongs to.
    pub session_id: ChatSessionId,
    /// Its place in the session, from 1: the order of the conversation.
    pub seq: u32,
    /// Who wrote it.
    pub role: ChatRole,
    /// The text.
    pub content: String,
    /// Tokens it took: the prompt's for a question, the answer's for an answer (as the
    /// provider reported them).
    pub tokens_used: u32,
    /// Which provider wrote an answer (`None` for a question).
    pub provider: Option<String>,
    /// Which model wrote an answer.
    pub model: Option<String>,
    /// What the answer cost (zero for a question).
    pub cost_micros: Micros,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// A question and its complete answer, stored together in one transaction: a broken answer
/// leaves nothing behind, so history never holds a question without its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The key the question was sent with.
    pub idempotency_key: IdempotencyKey,
    /// The user's message.
    pub question: ChatMessage,
    /// The model's message.
    pub answer: ChatMessage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_roles_parse() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(101)).is_err());
        assert_eq!(IdempotencyKey::parse(" k1 ").unwrap().as_str(), "k1");
        assert_ne!(IdempotencyKey::generated(), IdempotencyKey::generated());
        for r in [ChatRole::User, ChatRole::Assistant] {
            assert_eq!(ChatRole::parse(r.as_str()).unwrap(), r);
        }
    }
}
