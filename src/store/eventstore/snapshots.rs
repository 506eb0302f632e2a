//! Saving snapshots: the same SQL for both databases, in one write transaction.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, Pool, QueryBuilder};
use uuid::Uuid;

use super::EventStoreError;
use super::sql::EventDialect;
use crate::domain::eventstore::{EventError, Snapshot, SnapshotPolicy};
use crate::store::sql::{Bind, Column};

/// [`EventStore::save_snapshot`](super::EventStore::save_snapshot) on `writes`: checks the
/// stream has reached the snapshot's version, saves it and deletes all but the policy's last
/// `keep`, in one transaction (the stream's version is read under the write lock in SQLite,
/// and only grows in PostgreSQL, so the check still holds at the commit).
pub(super) async fn save<DB>(
    writes: &Pool<DB>,
    policy: SnapshotPolicy,
    snapshot: Snapshot,
) -> Result<(), EventStoreError>
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
    let stream = snapshot.stream_id.as_str();
    let version = i64::try_from(snapshot.version).unwrap_or(i64::MAX);
    let mut tx = writes.begin_with(DB::BEGIN_WRITE).await?;

    let mut qb = QueryBuilder::<DB>::new("SELECT version FROM event_streams WHERE stream_id = ");
    qb.push_bind(stream);
    let current: Option<(i64,)> = qb.build_query_as().fetch_optional(&mut *tx).await?;
    let current = current.map_or(0, |(v,)| u64::try_from(v).unwrap_or(0));
    if snapshot.version == 0 || snapshot.version > current {
        tx.rollback().await?;
        return Err(EventError::SnapshotAhead {
            stream_id: snapshot.stream_id,
            version: snapshot.version,
            current,
        }
        .into());
    }

    let mut qb = QueryBuilder::<DB>::new(
        "INSERT INTO event_snapshots (stream_id, version, data, created_at) VALUES (",
    );
    qb.push_bind(stream)
        .push(", ")
        .push_bind(version)
        .push(", ")
        .push_bind(Json(snapshot.data.clone()))
        .push(", ")
        .push_bind(snapshot.created_at)
        .push(
            ") ON CONFLICT (stream_id, version) DO UPDATE SET data = excluded.data, \
             created_at = excluded.created_at",
        );
    qb.build().execute(&mut *tx).await?;

    // Everything below the `keep` newest.
    let mut qb = QueryBuilder::<DB>::new("DELETE FROM event_snapshots WHERE stream_id = ");
    qb.push_bind(stream)
        .push(
            " AND version < (SELECT MIN(version) FROM (SELECT version FROM event_snapshots \
             WHERE stream_id = ",
        )
        .push_bind(stream)
        .push(" ORDER BY version DESC LIMIT ")
        .push_bind(i64::from(policy.keep()))
        .push(") AS kept)");
    qb.build().execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
