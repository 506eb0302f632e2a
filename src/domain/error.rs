//! Domain errors and the error record kept on a failed task.

use serde::{Deserialize, Serialize};

use super::TaskStatus;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    /// How the failure was classified.
    pub class: ErrorClass,
    /// What happened, safe to show to the task's owner.
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
            message: message.into(),
            provider: None,
        }
    }
}
