//! Errors of the task service, and their single mapping to HTTP and gRPC statuses.

use std::time::Duration;

use crate::domain::DomainError;
use crate::domain::eventstore::EventError;
use crate::group_commit::BatchError;
use crate::queue::QueueError;
use crate::store::StoreError;
use crate::store::eventstore::EventStoreError;

/// Why a request to the task service failed. Messages are safe to show to the caller;
/// internal causes are logged where they happen and never sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// The request breaks a rule (400 / INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String),
    /// The request body is too large (413 / INVALID_ARGUMENT).
    #[error("{0}")]
    TooLarge(String),
    /// The caller may not do this: an admin-only call by a user (403 / PERMISSION_DENIED).
    #[error("{0}")]
    Forbidden(String),
    /// No such task, or not the caller's (404 / NOT_FOUND).
    #[error("task {0} not found")]
    NotFound(String),
    /// Nothing of that kind by that name, or not the caller's (404 / NOT_FOUND); the message
    /// says what (`pipeline session … not found`).
    #[error("{0}")]
    Missing(String),
    /// The task's status does not allow this (409 / FAILED_PRECONDITION).
    #[error("{0}")]
    Conflict(String),
    /// Optimistic concurrency: the stream is not at the version the append expected (409 /
    /// ABORTED, with the stream's current version).
    #[error("{message}")]
    VersionConflict {
        /// What was expected and found.
        message: String,
        /// The stream's version when the append was refused.
        current_version: u64,
    },
    /// Too much work waiting; try again later (429 / RESOURCE_EXHAUSTED).
    #[error("{message}")]
    Busy {
        /// What limit was hit.
        message: String,
        /// When a retry is likely to succeed.
        retry_after: Duration,
    },
    /// This instance holds as many live connections as it may (`MAX_CONNECTIONS`): 503 /
    /// RESOURCE_EXHAUSTED; another instance, or later, may take it.
    #[error("{0}")]
    TooManyConnections(String),
    /// A dependency is down; the request may succeed later (503 / UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or corrupt data (500 / INTERNAL).
    #[error("internal error")]
    Internal,
}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m) => Self::Invalid(m),
            DomainError::TooLarge(m) => Self::TooLarge(m),
            DomainError::InvalidTransition { .. } => Self::Conflict(e.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        match e {
            StoreError::Unavailable(_) => Self::Unavailable("database unavailable".into()),
            StoreError::Corrupt(_) | StoreError::Migrate(_) => Self::Internal,
        }
    }
}

impl From<EventStoreError> for ServiceError {
    fn from(e: EventStoreError) -> Self {
        match e {
            EventStoreError::Store(e) => e.into(),
            EventStoreError::Rejected(e) => match e {
                EventError::Invalid(m) => Self::Invalid(m),
                EventError::VersionConflict { current, .. } => Self::VersionConflict {
                    message: e.to_string(),
                    current_version: current,
                },
                EventError::EventIdsReused { .. } => Self::Conflict(e.to_string()),
                EventError::SnapshotAhead { .. } => Self::Invalid(e.to_string()),
            },
        }
    }
}

impl From<QueueError> for ServiceError {
    fn from(e: QueueError) -> Self {
        tracing::error!(error = %e, "queue error");
        Self::Unavailable("queue unavailable".into())
    }
}

impl From<BatchError<StoreError>> for ServiceError {
    fn from(e: BatchError<StoreError>) -> Self {
        match e {
            BatchError::Failed(e) => match &*e {
                StoreError::Unavailable(cause) => {
                    tracing::error!(error = %cause, "store error");
                    Self::Unavailable("database unavailable".into())
                }
                other => {
                    tracing::error!(error = %other, "store error");
                    Self::Internal
                }
            },
            BatchError::Closed => Self::Unavailable("shutting down".into()),
        }
    }
}
