//! The PostgreSQL append: one autocommitted statement (one round trip) that checks and bumps
//! the stream's version, takes the batch's global positions and inserts the events.
//!
//! Why positions come from a counter row rather than a sequence: a sequence hands numbers out
//! before commit, so a transaction holding position 7 can commit after one holding 8, and a
//! reader that saw 8 and resumes "from 9" would never see 7. The counter row's lock is taken
//! by the statement and held until its transaction ends, so the next append takes its
//! positions only once this one has committed (or rolled back, giving its numbers back):
//! positions are dense and visible in order, and `read_all_events` is a plain range read.
//!
//! The lock is taken after the stream's row (every append locks the stream first, then the
//! counter, so two appends cannot deadlock), and is held for the insert and the commit's WAL
//! flush: that is the serial part of an append. The batch's transfer and parsing, and the
//! stream check, overlap with other appends.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::types::Json;

use super::sql::{EventDialect, FirstPlace, SqlEventStore};
use crate::domain::eventstore::{AppendBatch, SnapshotPolicy};
use crate::store::PgTaskStore;
use crate::store::sql::SqlStore;

/// The append. `$4` is the expected version: NULL (any), 0 (no stream) or the version.
/// `strm` proposes the stream's row only when it may be created (any, no stream) or exists
/// already, and updates an existing one only at the expected version; without a row from it,
/// `pos` takes no positions and `ins` inserts nothing, and the statement returns no row.
const APPEND: &str = "\
WITH strm AS ( \
  INSERT INTO event_streams AS s (stream_id, version, updated_at) \
  SELECT $1::varchar, $2::bigint, $3::timestamptz \
  WHERE $4::bigint IS NULL OR $4::bigint = 0 \
     OR EXISTS (SELECT 1 FROM event_streams WHERE stream_id = $1::varchar) \
  ON CONFLICT (stream_id) DO UPDATE \
    SET version = s.version + excluded.version, updated_at = excluded.updated_at \
    WHERE $4::bigint IS NULL OR s.version = $4::bigint \
  RETURNING s.version - $2::bigint AS base \
), pos AS ( \
  UPDATE event_store_position SET last_position = last_position + $2::bigint \
  WHERE id = 1 AND EXISTS (SELECT 1 FROM strm) \
  RETURNING last_position - $2::bigint AS base \
), ins AS ( \
  INSERT INTO event_store (global_position, event_id, stream_id, stream_version, event_type, \
    event_data, correlation_id, causation_id, user_id, occurred_at, recorded_at) \
  SELECT p.base + u.ord, u.event_id, $1::varchar, s.base + u.ord, u.event_type, u.event_data, \
    u.correlation_id, u.causation_id, u.user_id, u.occurred_at, $3::timestamptz \
  FROM strm s, pos p, UNNEST($5::uuid[], $6::varchar[], $7::jsonb[], $8::varchar[], \
    $9::varchar[], $10::varchar[], $11::timestamptz[]) WITH ORDINALITY \
    AS u(event_id, event_type, event_data, correlation_id, causation_id, user_id, occurred_at, ord) \
) \
SELECT s.base + 1, p.base + 1 FROM strm s, pos p";

impl EventDialect for sqlx::Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";

    // Nothing to do: PostgreSQL checkpoints by itself.
    async fn before_write(_writes: &PgPool, _wal_full: &AtomicBool) {}

    async fn append(
        writes: &PgPool,
        batch: &AppendBatch,
        now: DateTime<Utc>,
    ) -> Result<Option<FirstPlace>, sqlx::Error> {
        let events = batch.events();
        let n = events.len();
        let (mut ids, mut types, mut datas) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut correlations, mut causations, mut users, mut ats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in events {
            ids.push(e.event_id.as_uuid());
            types.push(e.event_type.as_str());
            datas.push(Json(&e.data));
            correlations.push(e.metadata.correlation_id.as_deref());
            causations.push(e.metadata.causation_id.as_deref());
            users.push(e.metadata.user_id.as_ref().map(|u| u.as_str()));
            ats.push(e.metadata.timestamp);
        }
        let expected = batch
            .expected()
            .version()
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let first: Option<(i64, i64)> = sqlx::query_as(APPEND)
            .bind(batch.stream_id().as_str())
            .bind(i64::try_from(n).unwrap_or(i64::MAX))
            .bind(now)
            .bind(expected)
            .bind(ids)
            .bind(types)
            .bind(datas)
            .bind(correlations)
            .bind(causations)
            .bind(users)
            .bind(ats)
            .fetch_optional(writes)
            .await?;
        Ok(first.map(|(version, position)| {
            let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
            (unsigned(version), unsigned(position))
        }))
    }
}

impl PgTaskStore {
    /// The event store on this store's connections, with `policy`.
    pub fn event_store(&self, policy: SnapshotPolicy) -> SqlEventStore<sqlx::Postgres> {
        let sql = self.sql();
        SqlEventStore::on(sql.reads, sql.writes, Arc::default(), policy)
    }
}
