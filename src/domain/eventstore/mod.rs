//! The event store's values (seed 002): streams, the events appended to them and read back,
//! snapshots and the rules an append must keep.
//!
//! Pure: no I/O and no clock. A caller builds [`EventEnvelope`]s with the time it chose; the
//! store (`store::eventstore`) numbers them (stream version and global position) and hands them
//! back as [`PersistedEvent`]s. Every timestamp is cut to microseconds, what PostgreSQL keeps,
//! so an event reads back equal in both databases.

mod append;
mod error;
mod event;
mod name;
mod snapshot;
mod stream;

pub use append::{AppendBatch, Appended, MAX_APPEND_EVENTS, MAX_READ_LIMIT, StoredPosition};
pub use error::EventError;
pub use event::{EventEnvelope, EventId, EventMetadata, EventType, PersistedEvent};
pub use snapshot::{Snapshot, SnapshotPolicy};
pub use stream::{ExpectedVersion, StreamId};
