//! Event store rows as read back, and their conversion to domain values.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::UserId;
use crate::domain::eventstore::{
    EventId, EventMetadata, EventType, PersistedEvent, Snapshot, StoredPosition, StreamId,
};
use crate::store::StoreError;

/// The columns of [`EventRow`], in its order.
pub(super) const EVENT_COLUMNS: &str = "global_position, event_id, stream_id, stream_version, \
     event_type, event_data, correlation_id, causation_id, user_id, occurred_at, recorded_at";

/// An `event_store` row.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    global_position: i64,
    event_id: Uuid,
    stream_id: String,
    stream_version: i64,
    event_type: String,
    event_data: Json<Value>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    user_id: Option<String>,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

/// A stored number read back as the unsigned one it was written from.
fn unsigned(n: i64, what: impl FnOnce() -> String) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(what()))
}

impl TryFrom<EventRow> for PersistedEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let position = r.global_position;
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {position}: bad {what}"));
        Ok(Self {
            event_id: EventId::from_uuid(r.event_id),
            stream_id: StreamId::try_from(r.stream_id).map_err(|_| corrupt("stream_id"))?,
            stream_version: unsigned(r.stream_version, || format!("event {position}: version"))?,
            global_position: unsigned(position, || format!("event position {position}"))?,
            event_type: EventType::try_from(r.event_type).map_err(|_| corrupt("event_type"))?,
            event_data: r.event_data.0,
            metadata: EventMetadata {
                correlation_id: r.correlation_id,
                causation_id: r.causation_id,
                user_id: match r.user_id {
                    Some(u) => Some(UserId::parse(&u).map_err(|_| corrupt("user_id"))?),
                    None => None,
                },
                timestamp: r.occurred_at,
            },
            created_at: r.recorded_at,
        })
    }
}

/// Converts rows, failing on the first corrupt one.
pub(super) fn into_events(rows: Vec<EventRow>) -> Result<Vec<PersistedEvent>, StoreError> {
    rows.into_iter().map(PersistedEvent::try_from).collect()
}

/// Where an event is stored: (stream, event id, version, position).
pub(super) type PlaceRow = (String, Uuid, i64, i64);

/// Converts [`PlaceRow`]s.
pub(super) fn into_places(
    rows: Vec<PlaceRow>,
) -> Result<Vec<(StreamId, StoredPosition)>, StoreError> {
    rows.into_iter()
        .map(|(stream, id, version, position)| {
            let what = || format!("event {id}: place");
            Ok((
                StreamId::try_from(stream).map_err(|_| StoreError::Corrupt(what()))?,
                StoredPosition {
                    event_id: EventId::from_uuid(id),
                    stream_version: unsigned(version, what)?,
                    global_position: unsigned(position, what)?,
                },
            ))
        })
        .collect()
}

/// An `event_snapshots` row: (stream, version, data, created_at).
pub(super) type SnapshotRow = (String, i64, Json<Value>, DateTime<Utc>);

/// Converts [`SnapshotRow`]s.
pub(super) fn into_snapshots(rows: Vec<SnapshotRow>) -> Result<Vec<Snapshot>, StoreError> {
    rows.into_iter()
        .map(|(stream, version, data, created_at)| {
            let what = || format!("snapshot of {stream} at {version}");
            Ok(Snapshot {
                stream_id: StreamId::parse(&stream).map_err(|_| StoreError::Corrupt(what()))?,
                version: unsigned(version, what)?,
                data: data.0,
                created_at,
            })
        })
        .collect()
}
