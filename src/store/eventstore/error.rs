//! Event store errors: a refusal by the rules, or the database failing.

use crate::domain::eventstore::EventError;
use crate::store::StoreError;

/// Why an event store call failed.
#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// The rules refused the request (bad input, version conflict, reused ids, snapshot ahead
    /// of its stream); nothing was stored. The edge maps each kind to its status.
    #[error(transparent)]
    Rejected(#[from] EventError),
    /// The database failed; the call may succeed later.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for EventStoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl EventStoreError {
    /// The stream's current version, when this is a version conflict.
    pub fn conflict_version(&self) -> Option<u64> {
        match self {
            Self::Rejected(e) => e.current_version(),
            Self::Store(_) => None,
        }
    }
}
