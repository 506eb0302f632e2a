//! The event store's reads, the same SQL for both databases, on the read pool.
//!
//! Every read is one indexed range: by position (the primary key), by stream and version
//! (the unique key) or by type and time (`event_store_type_time`).

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, Pool, QueryBuilder};
use uuid::Uuid;

use super::row::{
    EVENT_COLUMNS, EventRow, PlaceRow, SnapshotRow, into_events, into_places, into_snapshots,
};
use super::sql::EventDialect;
use crate::domain::eventstore::{
    EventEnvelope, EventType, MAX_READ_LIMIT, PersistedEvent, Snapshot, StoredPosition, StreamId,
};
use crate::store::StoreError;
use crate::store::sql::{Bind, Column, IN_CHUNK};

/// The reads, on one pool.
pub(super) struct Reads<'a, DB: sqlx::Database>(pub(super) &'a Pool<DB>);

/// `SELECT <every event column> FROM event_store WHERE `, for conditions to follow.
fn select_events<DB: EventDialect>() -> QueryBuilder<DB> {
    QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM event_store WHERE "))
}

/// A version or position as bound: past `i64::MAX` nothing is stored anyway.
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A caller's limit, within [`MAX_READ_LIMIT`].
fn bounded(limit: u32) -> i64 {
    i64::from(limit.min(MAX_READ_LIMIT))
}

impl<DB> Reads<'_, DB>
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
    /// The events `qb` selects.
    async fn events(&self, mut qb: QueryBuilder<DB>) -> Result<Vec<PersistedEvent>, StoreError> {
        let rows: Vec<EventRow> = qb.build_query_as().fetch_all(self.0).await?;
        into_events(rows)
    }

    /// [`EventStore::read_events`](super::EventStore::read_events).
    pub(super) async fn stream(
        &self,
        stream_id: &StreamId,
        from_version: u64,
        to_version: Option<u64>,
    ) -> Result<Vec<PersistedEvent>, StoreError> {
        let mut qb = select_events::<DB>();
        qb.push("stream_id = ")
            .push_bind(stream_id.as_str())
            .push(" AND stream_version >= ")
            .push_bind(signed(from_version));
        if let Some(to) = to_version {
            qb.push(" AND stream_version <= ").push_bind(signed(to));
        }
        qb.push(" ORDER BY stream_version");
        self.events(qb).await
    }

    /// [`EventStore::read_all_events`](super::EventStore::read_all_events). Positions are
    /// taken in commit order (see the module's doc), so the range needs no other guard.
    pub(super) async fn all(
        &self,
        from_position: u64,
        limit: u32,
    ) -> Result<Vec<PersistedEvent>, StoreError> {
        let mut qb = select_events::<DB>();
        qb.push("global_position >= ")
            .push_bind(signed(from_position))
            .push(" ORDER BY global_position LIMIT ")
            .push_bind(bounded(limit));
        self.events(qb).await
    }

    /// [`EventStore::read_events_by_type`](super::EventStore::read_events_by_type).
    pub(super) async fn by_type(
        &self,
        event_type: &EventType,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<PersistedEvent>, StoreError> {
        let mut qb = select_events::<DB>();
        qb.push("event_type = ")
            .push_bind(event_type.as_str())
            .push(" AND occurred_at >= ")
            .push_bind(from.trunc_subsecs(6));
        if let Some(to) = to {
            qb.push(" AND occurred_at < ")
                .push_bind(to.trunc_subsecs(6));
        }
        qb.push(" ORDER BY occurred_at, global_position LIMIT ")
            .push_bind(bounded(limit));
        self.events(qb).await
    }

    /// [`EventStore::stream_version`](super::EventStore::stream_version).
    pub(super) async fn stream_version(&self, stream_id: &StreamId) -> Result<u64, StoreError> {
        let mut qb =
            QueryBuilder::<DB>::new("SELECT version FROM event_streams WHERE stream_id = ");
        qb.push_bind(stream_id.as_str());
        let version: Option<(i64,)> = qb.build_query_as().fetch_optional(self.0).await?;
        Ok(version.map_or(0, |(v,)| u64::try_from(v).unwrap_or(0)))
    }

    /// [`EventStore::last_position`](super::EventStore::last_position).
    pub(super) async fn last_position(&self) -> Result<u64, StoreError> {
        let (last,): (i64,) =
            sqlx::query_as("SELECT last_position FROM event_store_position WHERE id = 1")
                .fetch_one(self.0)
                .await?;
        Ok(u64::try_from(last).unwrap_or(0))
    }

    /// Where those of `events` that are stored are: their stream, version and position.
    pub(super) async fn places(
        &self,
        events: &[EventEnvelope],
    ) -> Result<Vec<(StreamId, StoredPosition)>, StoreError> {
        let mut found = Vec::new();
        for chunk in events.chunks(IN_CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT stream_id, event_id, stream_version, global_position FROM event_store \
                 WHERE event_id IN (",
            );
            let mut list = qb.separated(", ");
            for e in chunk {
                list.push_bind(e.event_id.as_uuid());
            }
            qb.push(")");
            let rows: Vec<PlaceRow> = qb.build_query_as().fetch_all(self.0).await?;
            found.extend(into_places(rows)?);
        }
        Ok(found)
    }

    /// The stream's snapshots, newest first, at most `limit` of them.
    pub(super) async fn snapshots(
        &self,
        stream_id: &StreamId,
        limit: Option<u32>,
    ) -> Result<Vec<Snapshot>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT stream_id, version, data, created_at FROM event_snapshots WHERE stream_id = ",
        );
        qb.push_bind(stream_id.as_str())
            .push(" ORDER BY version DESC");
        if let Some(limit) = limit {
            qb.push(" LIMIT ").push_bind(i64::from(limit));
        }
        let rows: Vec<SnapshotRow> = qb.build_query_as().fetch_all(self.0).await?;
        into_snapshots(rows)
    }
}
