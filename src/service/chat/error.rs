//! Why a chat request failed. Messages are safe to show the caller; `api/error.rs` maps each
//! to its HTTP status and gRPC code.

use std::time::Duration;

use crate::domain::DomainError;
use crate::domain::chat::{ChatSessionId, TurnRefusal};
use crate::providers::ProviderError;
use crate::store::StoreError;

/// A chat request refused or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChatError {
    /// Bad input; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// No such session, or not the caller's (the two are not told apart).
    #[error("chat session {0} not found")]
    NotFound(String),
    /// The session is closed or expired, or holds its maximum of messages.
    #[error(transparent)]
    Refused(#[from] TurnRefusal),
    /// Another message of the session is being answered: turns never interleave.
    #[error(
        "a message of chat session {0} is still being answered; wait for its answer, then send again"
    )]
    TurnInProgress(ChatSessionId),
    /// The caller sent messages faster than `CHAT_USER_MESSAGE_RATE` allows.
    #[error("chat message rate limit of {rate} per user exceeded; retry later")]
    RateLimited {
        /// The limit, as configured.
        rate: String,
        /// When a retry is likely to pass.
        retry_after: Duration,
    },
    /// Every provider of the chain failed before its first token (or none is configured).
    #[error("no provider could answer: {0}")]
    Provider(String),
    /// The answer broke off after part of it was streamed; nothing was stored. Send the same
    /// message again with the same `idempotency_key` to retry.
    #[error(
        "the answer broke off mid-stream ({0}); nothing was stored: send the message again with the same idempotency_key"
    )]
    Broken(String),
    /// The session was closed (or expired) while its answer was written: the caller's own
    /// doing, so a conflict, not a gateway failure; nothing was stored.
    #[error("the session was closed or expired while the answer was written; nothing was stored")]
    ClosedMidAnswer,
    /// The answer took longer than the turn's bound; nothing was stored.
    #[error("the answer took longer than {0:?}; nothing was stored")]
    Timeout(Duration),
    /// The server is stopping; nothing was stored.
    #[error("server shutting down; nothing was stored: send the message again")]
    ShuttingDown,
    /// The database failed; the request may succeed later.
    #[error("database unavailable")]
    Unavailable,
    /// A bug or corrupt data.
    #[error("internal error")]
    Internal,
}

impl ChatError {
    /// Seconds to wait before retrying, for the responses that have one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A provider failure before any text was streamed.
    pub fn from_provider(e: &ProviderError) -> Self {
        Self::Provider(e.message.clone())
    }
}

impl From<DomainError> for ChatError {
    fn from(e: DomainError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "chat store error");
        match e {
            StoreError::Unavailable(_) => Self::Unavailable,
            StoreError::Corrupt(_) | StoreError::Migrate(_) => Self::Internal,
        }
    }
}
