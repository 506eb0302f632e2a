//! The SQLite append: one transaction on the store's single writer connection.
//!
//! SQLite runs one write transaction at a time, and this store has one writer connection
//! (see `store/sqlite/writer.rs`), shared with the task store's write loop: an append queues
//! for it like any other write, takes the write lock at once (`BEGIN IMMEDIATE`), and its
//! positions are commit-ordered because nothing else can commit in between. Three trips to
//! the connection's thread: the stream's version and the last position together, every write
//! of the append together, and the commit. Like the write loop, it lets a full WAL start over
//! before its transaction (`store/sqlite/checkpoint.rs`).

use std::sync::atomic::AtomicBool;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::QueryBuilder;
use sqlx::sqlite::{Sqlite, SqlitePool};
use sqlx::types::Json;

use super::sql::{EventDialect, FirstPlace, SqlEventStore};
use crate::domain::eventstore::{AppendBatch, SnapshotPolicy};
use crate::store::SqliteTaskStore;
use crate::store::sql::{INSERT_CHUNK, SqlStore};
use crate::store::sqlite::restart_wal_if_full;

impl EventDialect for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    /// Lets a full WAL start over, as the write loop does between its transactions: appends
    /// alone, back to back, would otherwise grow it without end.
    async fn before_write(writes: &SqlitePool, wal_full: &AtomicBool) {
        restart_wal_if_full(writes, wal_full).await;
    }

    async fn append(
        writes: &SqlitePool,
        batch: &AppendBatch,
        now: DateTime<Utc>,
    ) -> Result<Option<FirstPlace>, sqlx::Error> {
        let stream = batch.stream_id().as_str();
        // A dropped transaction rolls back when its connection is next used, so a caller
        // that gives up mid-append leaves nothing behind.
        let mut tx = writes.begin_with(Self::BEGIN_WRITE).await?;
        let (current, last): (Option<i64>, i64) = sqlx::query_as(
            "SELECT (SELECT version FROM event_streams WHERE stream_id = ?), last_position \
             FROM event_store_position WHERE id = 1",
        )
        .bind(stream)
        .fetch_one(&mut *tx)
        .await?;
        let current = current.map_or(0, |v| u64::try_from(v).unwrap_or(0));
        if !batch.expected().allows(current) {
            tx.rollback().await?;
            return Ok(None);
        }
        let n = i64::try_from(batch.len()).unwrap_or(i64::MAX);
        let version = i64::try_from(current).unwrap_or(i64::MAX);

        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_streams (stream_id, version, updated_at) VALUES (",
        );
        qb.push_bind(stream)
            .push(", ")
            .push_bind(version + n)
            .push(", ")
            .push_bind(now)
            .push(
                ") ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
                 updated_at = excluded.updated_at; \
                 UPDATE event_store_position SET last_position = last_position + ",
            )
            .push_bind(n)
            .push(" WHERE id = 1; ");
        let numbered: Vec<(i64, _)> = (1..).zip(batch.events()).collect();
        // 11 binds a row: well under SQLite's per-statement variable limit.
        for chunk in numbered.chunks(INSERT_CHUNK) {
            qb.push(
                "INSERT INTO event_store (global_position, event_id, stream_id, stream_version, \
                 event_type, event_data, correlation_id, causation_id, user_id, occurred_at, \
                 recorded_at) ",
            );
            qb.push_values(chunk, |mut b, (i, e)| {
                b.push_bind(last + i)
                    .push_bind(e.event_id.as_uuid())
                    .push_bind(stream)
                    .push_bind(version + i)
                    .push_bind(e.event_type.as_str())
                    .push_bind(Json(&e.data))
                    .push_bind(e.metadata.correlation_id.as_deref())
                    .push_bind(e.metadata.causation_id.as_deref())
                    .push_bind(e.metadata.user_id.as_ref().map(|u| u.as_str()))
                    .push_bind(e.metadata.timestamp.trunc_subsecs(6))
                    .push_bind(now);
            });
            qb.push("; ");
        }
        if let Err(e) = qb.build().execute(&mut *tx).await {
            // An id stored already (perhaps a retry): undo before the caller looks.
            tx.rollback().await?;
            return Err(e);
        }
        tx.commit().await?;
        let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Some((unsigned(version + 1), unsigned(last + 1))))
    }
}

impl SqliteTaskStore {
    /// The event store on this store's connections (its readers, and its one writer), with
    /// `policy`.
    pub fn event_store(&self, policy: SnapshotPolicy) -> SqlEventStore<Sqlite> {
        let sql = self.sql();
        SqlEventStore::on(sql.reads, sql.writes, self.wal_full(), policy)
    }
}
