//! Domain errors and the error record kept on a failed task.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TaskStatus;
use super::redact::{redact, redact_owned};

/// What went wrong applying a rule of the domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input breaks a rule; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// The input is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The task's status does not allow this transition.
    #[error("task is {from}, cannot become {to}")]
    InvalidTransition { from: TaskStatus, to: TaskStatus },
}

/// How a failure should be handled (seed 003's error classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Timeouts, connection errors, 5xx: try again after a backoff.
    Retryable,
    /// Bad request, auth, content policy: trying again cannot help.
    NonRetryable,
    /// The provider said 429: try again after its `Retry-After`.
    RateLimited,
}

impl ErrorClass {
    /// Parses a wire name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        [Self::Retryable, Self::NonRetryable, Self::RateLimited]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                DomainError::Invalid(format!(
                    "unknown error class {s:?}; expected retryable, non_retryable or rate_limited"
                ))
            })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::NonRetryable => "non_retryable",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// The error kept on a task (the `error_info` column of seed 001).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskError {
    /// How the failure was classified.
    pub class: ErrorClass,
    /// What happened, safe to show to the task's owner: PII and tokens are masked when it is
    /// made, stored, sent and read back, so a message built from a provider's answer cannot
    /// leak them by any path.
    #[serde(serialize_with = "masked", deserialize_with = "unmasked_or_masked")]
    pub message: String,
    /// The provider that failed, when one was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl TaskError {
    /// An error of `class` with `message` and no provider.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: redact_owned(message.into()),
            provider: None,
        }
    }
}

fn masked<S: Serializer>(message: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact(message))
}

/// Rows written before masking existed are masked as they are read.
fn unmasked_or_masked<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(redact_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_error_messages_are_masked_every_way() {
        let e = TaskError::new(ErrorClass::NonRetryable, "no such user bob@example.com");
        assert_eq!(e.message, "no such user [email]");
        // A literal skips `new`; serialization still masks.
        let literal = TaskError {
            class: ErrorClass::Retryable,
            message: "call +81-90-1234-5678".into(),
            provider: None,
        };
        let json = serde_json::to_value(&literal).unwrap();
        assert_eq!(json["message"], "call [phone]");
        // An old row stored unmasked is masked when read.
        let raw = serde_json::json!({"class": "retryable", "message": "key sk-abcdefghijklmnop1"});
        let read: TaskError = serde_json::from_value(raw).unwrap();
        assert_eq!(read.message, "key [api-key]");
    }
}
