//! [`EventStore`] for every database the shared SQL serves: the checks and the idempotency
//! rules once, the append each database's own way ([`EventDialect`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, Pool, Postgres, Sqlite};
use uuid::Uuid;

use super::reads::Reads;
use super::{EventStore, EventStoreError};
use crate::domain::eventstore::{
    AppendBatch, Appended, EventEnvelope, EventError, EventType, ExpectedVersion, PersistedEvent,
    Snapshot, SnapshotPolicy, StreamId,
};
use crate::store::sql::{Bind, Column, Dialect};

/// Events in PostgreSQL (clustered mode).
pub type PgEventStore = SqlEventStore<Postgres>;
/// Events in SQLite (embedded mode).
pub type SqliteEventStore = SqlEventStore<Sqlite>;

/// The event store on a task store's connections (make one with
/// [`PgTaskStore::event_store`](crate::store::PgTaskStore::event_store) or
/// [`SqliteTaskStore::event_store`](crate::store::SqliteTaskStore::event_store)).
#[derive(Clone)]
pub struct SqlEventStore<DB: sqlx::Database> {
    /// For reads.
    pub(super) reads: Pool<DB>,
    /// For writes: in SQLite the one writer connection, shared with the task store's write
    /// loop, so an append waits its turn instead of meeting `SQLITE_BUSY`.
    pub(super) writes: Pool<DB>,
    /// SQLite: raised by the store's checkpointer when the WAL should start over, so the next
    /// write checkpoints first, as the write loop does (see `store/sqlite/checkpoint.rs`).
    /// Never raised in PostgreSQL.
    pub(super) wal_full: Arc<AtomicBool>,
    /// When snapshots are due and how many are kept.
    pub(super) policy: SnapshotPolicy,
}

/// Where an append's events went: the first one's stream version and global position (the
/// others follow one by one).
pub(super) type FirstPlace = (u64, u64);

/// How a database appends: checks the stream's version and stores the batch with its global
/// positions, all in one transaction in which positions are taken in commit order.
pub(super) trait EventDialect: Dialect {
    /// The statement that opens a write transaction.
    const BEGIN_WRITE: &'static str;

    /// Runs before each write transaction on `writes`, with the store's `wal_full` flag.
    fn before_write(writes: &Pool<Self>, wal_full: &AtomicBool) -> impl Future<Output = ()> + Send;

    /// Stores `batch` recorded at `now`. `Ok(None)`: the stream was not at the expected
    /// version, nothing stored. An error of the database as it came (a unique violation
    /// may be a retry, which the caller recognises).
    fn append(
        writes: &Pool<Self>,
        batch: &AppendBatch,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<FirstPlace>, sqlx::Error>> + Send;
}

/// Whether `e` is a UNIQUE or PRIMARY KEY violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl<DB> EventStore for SqlEventStore<DB>
where
    DB: EventDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i64: Column<DB>,
    Option<String>: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Json<Value>: Column<DB>,
{
    async fn append_events(
        &self,
        stream_id: &StreamId,
        events: Vec<EventEnvelope>,
        expected: ExpectedVersion,
    ) -> Result<Appended, EventStoreError> {
        let batch = AppendBatch::new(stream_id.clone(), events, expected)?;
        DB::before_write(&self.writes, &self.wal_full).await;
        let failure = match DB::append(&self.writes, &batch, crate::clock::now()).await {
            Ok(Some((version, position))) => {
                return Ok(batch.stored(version, position, self.policy));
            }
            Ok(None) => None,
            Err(e) if is_unique_violation(&e) => Some(e),
            Err(e) => return Err(e.into()),
        };
        // Refused: a retry of an append that committed is answered as it was then; anything
        // else is a conflict.
        let reads = Reads(&self.reads);
        if let Some(done) = batch.recognise(&reads.places(batch.events()).await?)? {
            return Ok(done);
        }
        if let Some(e) = failure {
            // Two appends raced for the same versions (the stream row orders appenders, so
            // this should not happen); it is a conflict all the same.
            tracing::debug!(error = %e, stream = %stream_id, "append lost a race");
        }
        Err(EventError::VersionConflict {
            stream_id: stream_id.clone(),
            expected,
            current: reads.stream_version(stream_id).await?,
        }
        .into())
    }

    async fn read_events(
        &self,
        stream_id: &StreamId,
        from_version: u64,
        to_version: Option<u64>,
    ) -> Result<Vec<PersistedEvent>, EventStoreError> {
        Ok(Reads(&self.reads)
            .stream(stream_id, from_version, to_version)
            .await?)
    }

    async fn read_all_events(
        &self,
        from_position: u64,
        limit: u32,
    ) -> Result<Vec<PersistedEvent>, EventStoreError> {
        Ok(Reads(&self.reads).all(from_position, limit).await?)
    }

    async fn read_events_by_type(
        &self,
        event_type: &EventType,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<PersistedEvent>, EventStoreError> {
        Ok(Reads(&self.reads)
            .by_type(event_type, from, to, limit)
            .await?)
    }

    async fn stream_version(&self, stream_id: &StreamId) -> Result<u64, EventStoreError> {
        Ok(Reads(&self.reads).stream_version(stream_id).await?)
    }

    async fn last_position(&self) -> Result<u64, EventStoreError> {
        Ok(Reads(&self.reads).last_position().await?)
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        DB::before_write(&self.writes, &self.wal_full).await;
        super::snapshots::save(&self.writes, self.policy, snapshot).await
    }

    async fn get_latest_snapshot(
        &self,
        stream_id: &StreamId,
    ) -> Result<Option<Snapshot>, EventStoreError> {
        Ok(Reads(&self.reads)
            .snapshots(stream_id, Some(1))
            .await?
            .pop())
    }

    async fn list_snapshots(&self, stream_id: &StreamId) -> Result<Vec<Snapshot>, EventStoreError> {
        Ok(Reads(&self.reads).snapshots(stream_id, None).await?)
    }

    fn snapshot_policy(&self) -> SnapshotPolicy {
        self.policy
    }
}

impl<DB: sqlx::Database> SqlEventStore<DB> {
    /// The store on `reads` and `writes`, with `policy`.
    pub(super) fn on(
        reads: &Pool<DB>,
        writes: &Pool<DB>,
        wal_full: Arc<AtomicBool>,
        policy: SnapshotPolicy,
    ) -> Self {
        Self {
            reads: reads.clone(),
            writes: writes.clone(),
            wal_full,
            policy,
        }
    }
}
