//! Why the event store refused a request; what the edge maps to a status.

use super::{EventId, ExpectedVersion, StreamId};

/// A request the event store's rules refuse. Nothing of a refused append is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The input breaks a rule; the message says which (HTTP 400, gRPC INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String),
    /// Optimistic concurrency: the stream is not at the expected version (HTTP 409, gRPC
    /// ABORTED). `current` is its version when the append was refused; read from there and
    /// try again.
    #[error("stream {stream_id} is at version {current}, not {expected}")]
    VersionConflict {
        /// The stream.
        stream_id: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// What the stream was at.
        current: u64,
    },
    /// Some of the events' ids are stored already, but not as this same append to this
    /// stream (a retry must repeat its batch whole; a new event needs a new id). HTTP 409,
    /// gRPC ALREADY_EXISTS.
    #[error("event ids already stored elsewhere: {}", ids(.event_ids))]
    EventIdsReused {
        /// The stream appended to.
        stream_id: StreamId,
        /// The ids of the batch found stored.
        event_ids: Vec<EventId>,
    },
    /// A snapshot of a version the stream has not reached (HTTP 400, gRPC
    /// FAILED_PRECONDITION).
    #[error("stream {stream_id} is at version {current}; no snapshot at {version}")]
    SnapshotAhead {
        /// The stream.
        stream_id: StreamId,
        /// The snapshot's version.
        version: u64,
        /// The stream's version.
        current: u64,
    },
}

fn ids(ids: &[EventId]) -> String {
    let shown: Vec<String> = ids.iter().take(5).map(EventId::to_string).collect();
    let more = ids.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

impl EventError {
    /// The stream's version, when this is a version conflict.
    pub fn current_version(&self) -> Option<u64> {
        match self {
            Self::VersionConflict { current, .. } => Some(*current),
            _ => None,
        }
    }
}
