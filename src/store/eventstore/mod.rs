//! The event store (seed 002): the [`EventStore`] port and its SQL implementation for
//! PostgreSQL and SQLite.
//!
//! Streams of events with optimistic concurrency, one global order over every stream that a
//! catch-up reader can trust, reads by stream, by position and by type, and snapshots. The
//! values are in [`crate::domain::eventstore`]; the tables in `migrations/*/…_event_store.sql`.
//!
//! Files: `sql.rs` is [`SqlEventStore`], the port for any database the shared SQL serves;
//! `reads.rs` and `snapshots.rs` are its SQL, the same for both databases; an append is each
//! database's own (`postgres.rs`: one statement; `sqlite.rs`: one transaction on the single
//! writer connection); `row.rs` reads rows back; `error.rs` is [`EventStoreError`].
//!
//! How the global order stays gap-safe: positions are handed out from one counter row by the
//! statement that inserts the events, and its lock is held until commit, so positions are
//! taken in commit order, dense, and a rollback gives its numbers back. A reader that asks for
//! "from position N" therefore never misses an event that commits after it read: none can
//! still take a number below one it has seen. The cost is that appends commit one after
//! another (stream checks and the transfer of the batch run in parallel; the insert and its
//! commit do not). docs/eventstore.md has the reasoning and the figures.

mod error;
mod postgres;
mod reads;
mod row;
mod snapshots;
mod sql;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::eventstore::{
    Appended, EventEnvelope, EventType, ExpectedVersion, PersistedEvent, Snapshot, SnapshotPolicy,
    StreamId,
};

pub use error::EventStoreError;
pub use sql::{PgEventStore, SqlEventStore, SqliteEventStore};

/// Durable streams of events (seed 002's EventStore).
///
/// Versions count a stream's events from 1 (a stream with none is at 0); global positions
/// number every event of every stream from 1, in commit order, without gaps. Timestamps are
/// microseconds. Reads never return more than
/// [`MAX_READ_LIMIT`](crate::domain::eventstore::MAX_READ_LIMIT) events.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream_id`, in order, all or none, if the stream is at `expected`.
    ///
    /// - A stream not at `expected`: [`EventError::VersionConflict`] with its current version;
    ///   nothing is stored.
    /// - Event ids already stored by an earlier append of this same batch (a retry after a
    ///   lost answer): success with the stored places and `already_stored`; nothing is stored
    ///   twice. Ids stored in any other way: [`EventError::EventIdsReused`].
    /// - An empty batch, repeated ids, oversized metadata: [`EventError::Invalid`].
    ///
    /// [`EventError::VersionConflict`]: crate::domain::eventstore::EventError::VersionConflict
    /// [`EventError::EventIdsReused`]: crate::domain::eventstore::EventError::EventIdsReused
    /// [`EventError::Invalid`]: crate::domain::eventstore::EventError::Invalid
    async fn append_events(
        &self,
        stream_id: &StreamId,
        events: Vec<EventEnvelope>,
        expected: ExpectedVersion,
    ) -> Result<Appended, EventStoreError>;

    /// The events of `stream_id` from version `from_version` to `to_version` (both included;
    /// `None`: to the end), in version order. Empty for a stream that does not exist.
    async fn read_events(
        &self,
        stream_id: &StreamId,
        from_version: u64,
        to_version: Option<u64>,
    ) -> Result<Vec<PersistedEvent>, EventStoreError>;

    /// Up to `limit` events of every stream from global position `from_position` (included),
    /// in position order. A catch-up reader calls it again from its last position + 1: it
    /// sees every committed event exactly once, whatever commits late or rolls back.
    async fn read_all_events(
        &self,
        from_position: u64,
        limit: u32,
    ) -> Result<Vec<PersistedEvent>, EventStoreError>;

    /// Up to `limit` events of type `event_type` whose `metadata.timestamp` is at or after
    /// `from` and before `to` (`None`: no end), ordered by that timestamp, then position. To
    /// page, ask again from the last timestamp and skip the ids already seen.
    async fn read_events_by_type(
        &self,
        event_type: &EventType,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<PersistedEvent>, EventStoreError>;

    /// The version of `stream_id`'s last event (0: no such stream).
    async fn stream_version(&self, stream_id: &StreamId) -> Result<u64, EventStoreError>;

    /// The global position of the last committed event (0: none): how far a reader has to go,
    /// for lag monitoring.
    async fn last_position(&self) -> Result<u64, EventStoreError>;

    /// Saves `snapshot` (replacing one of the same stream and version), then deletes the
    /// stream's snapshots older than the policy's last `keep`. A snapshot of a version the
    /// stream has not reached is refused ([`EventError::SnapshotAhead`]).
    ///
    /// [`EventError::SnapshotAhead`]: crate::domain::eventstore::EventError::SnapshotAhead
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError>;

    /// The stream's snapshot of the highest version, if any.
    async fn get_latest_snapshot(
        &self,
        stream_id: &StreamId,
    ) -> Result<Option<Snapshot>, EventStoreError>;

    /// The stream's kept snapshots, newest first.
    async fn list_snapshots(&self, stream_id: &StreamId) -> Result<Vec<Snapshot>, EventStoreError>;

    /// When snapshots are due and how many are kept.
    fn snapshot_policy(&self) -> SnapshotPolicy;
}
