//! `/api/v1/eventstore/*`: appends, reads and the live subscription (SSE), for admins and
//! service accounts (`role: service`).
//!
//! An event as clients see it: `{"event_id", "stream_id", "stream_version",
//! "global_position", "type", "data", "metadata": {"correlation_id", "causation_id",
//! "user_id", "timestamp"}, "created_at"}`.

use std::convert::Infallible;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::json::Body;
use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::domain::UserId;
use crate::domain::eventstore::{
    EventEnvelope, EventId, EventMetadata, EventType, ExpectedVersion, PersistedEvent, StreamId,
};
use crate::service::ServiceError;

/// Events a page returns when the caller names no limit.
const DEFAULT_LIMIT: u32 = 100;
/// Most events one read returns (the store's bound): a larger limit is refused, not cut.
const MAX_LIMIT: u32 = crate::domain::eventstore::MAX_READ_LIMIT;

/// A path parameter, or a clear 400.
fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|r| ServiceError::Invalid(r.body_text()).into())
}

/// Query parameters, or a clear 400.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|r| ServiceError::Invalid(r.body_text()).into())
}

fn invalid(e: impl ToString) -> ApiError {
    ServiceError::Invalid(e.to_string()).into()
}

/// A page's limit: the default when absent, refused above [`MAX_LIMIT`].
fn limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if n > MAX_LIMIT => Err(invalid(format!("limit must be at most {MAX_LIMIT}"))),
        Some(n) => Ok(n),
    }
}

/// A version or position: stored as a signed 64-bit number, so larger ones cannot exist.
fn position(name: &str, v: u64) -> Result<u64, ApiError> {
    if i64::try_from(v).is_err() {
        return Err(invalid(format!("{name} must be at most {}", i64::MAX)));
    }
    Ok(v)
}

/// Who and when, as appended.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataBody {
    correlation_id: Option<String>,
    causation_id: Option<String>,
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    user_id: Option<String>,
    /// When it happened; now when absent.
    timestamp: Option<DateTime<Utc>>,
}

/// One event of an append.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEventBody {
    /// The client's id, so a retry is recognised; a fresh one when absent.
    #[schema(value_type = Option<uuid::Uuid>)]
    event_id: Option<String>,
    /// 1 to 200 characters, no whitespace or control characters.
    #[serde(rename = "type")]
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,200}$")]
    event_type: String,
    /// The event's JSON.
    #[schema(value_type = Object)]
    data: Value,
    #[serde(default)]
    metadata: MetadataBody,
}

/// `POST /api/v1/eventstore/streams/{stream_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// The stream's version the append expects (0: no stream yet); `null` or absent: any.
    #[serde(default)]
    #[schema(maximum = 9223372036854775807i64)]
    expected_version: Option<u64>,
    events: Vec<NewEventBody>,
}

impl NewEventBody {
    /// The event, parsed; `i` names it in errors.
    fn parse(self, i: usize) -> Result<EventEnvelope, ApiError> {
        let at = |e: String| invalid(format!("events[{i}]: {e}"));
        let m = self.metadata;
        let mut metadata = EventMetadata::at(m.timestamp.unwrap_or_else(crate::clock::now));
        metadata.correlation_id = m.correlation_id;
        metadata.causation_id = m.causation_id;
        metadata.user_id = match m.user_id {
            Some(u) => Some(UserId::parse(&u).map_err(|e| at(format!("metadata.user_id: {e}")))?),
            None => None,
        };
        let event_type = EventType::parse(&self.event_type).map_err(|e| at(e.to_string()))?;
        let event = EventEnvelope::new(event_type, self.data, metadata);
        Ok(match self.event_id {
            Some(id) => event.with_id(EventId::parse(&id).map_err(|e| at(e.to_string()))?),
            None => event,
        })
    }
}

/// An event as clients see it.
#[derive(Debug, Serialize)]
pub struct EventBody<'a> {
    event_id: EventId,
    stream_id: &'a StreamId,
    stream_version: u64,
    global_position: u64,
    #[serde(rename = "type")]
    event_type: &'a EventType,
    data: &'a Value,
    metadata: &'a EventMetadata,
    created_at: DateTime<Utc>,
}

impl<'a> From<&'a PersistedEvent> for EventBody<'a> {
    fn from(e: &'a PersistedEvent) -> Self {
        Self {
            event_id: e.event_id,
            stream_id: &e.stream_id,
            stream_version: e.stream_version,
            global_position: e.global_position,
            event_type: &e.event_type,
            data: &e.event_data,
            metadata: &e.metadata,
            created_at: e.created_at,
        }
    }
}

fn events_json(events: &[PersistedEvent]) -> Vec<EventBody<'_>> {
    events.iter().map(EventBody::from).collect()
}

/// `POST /api/v1/eventstore/streams/{stream_id}`: 201 with `{"stream_id", "stream_version",
/// "events": [{"event_id", "stream_version", "global_position"}]}` (200 and
/// `"already_stored": true` for a retry of an append that was stored); 409 with
/// `error.current_version` on a version conflict.
#[utoipa::path(post, path = "/api/v1/eventstore/streams/{stream_id}", tag = "eventstore", params(("stream_id" = String, Path, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,200}$", description = "A stream id")),
    request_body = AppendBody,
    responses((status = 201, description = "`{\"stream_id\", \"stream_version\", \"events\", \"already_stored\"}`", body = Object),
        (status = 200, description = "A retry of a stored append (`already_stored`: true)", body = Object),
        (status = 409, description = "`version_conflict`, with `error.current_version`", body = super::openapi::ErrorBody)))]
pub async fn append(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    stream: Result<Path<String>, PathRejection>,
    Body(body): Body<AppendBody>,
) -> Result<Response, ApiError> {
    let stream = StreamId::parse(&path(stream)?).map_err(invalid)?;
    let events = body
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.parse(i))
        .collect::<Result<Vec<_>, _>>()?;
    let expected = ExpectedVersion::from_option(body.expected_version);
    let appended = state
        .eventstore
        .append(&caller, &stream, expected, events)
        .await?;
    let status = if appended.already_stored {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = json!({
        "stream_id": stream,
        "stream_version": appended.stream_version,
        "events": appended.events,
        "already_stored": appended.already_stored,
    });
    Ok((status, Json(body)).into_response())
}

/// `GET /api/v1/eventstore/streams/{stream_id}` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    #[serde(default)]
    #[param(maximum = 9223372036854775807i64)]
    from_version: u64,
    #[param(maximum = 9223372036854775807i64)]
    to_version: Option<u64>,
}

/// `GET /api/v1/eventstore/streams/{stream_id}?from_version=&to_version=` → `{"events"}`.
#[utoipa::path(get, path = "/api/v1/eventstore/streams/{stream_id}", tag = "eventstore", params(("stream_id" = String, Path, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,200}$", description = "A stream id"), StreamQuery),
    responses((status = 200, description = "`{\"stream_id\", \"events\"}`", body = Object)))]
pub async fn read_stream(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    stream: Result<Path<String>, PathRejection>,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let stream = StreamId::parse(&path(stream)?).map_err(invalid)?;
    let q = query(q)?;
    let from = position("from_version", q.from_version)?;
    let to = q
        .to_version
        .map(|v| position("to_version", v))
        .transpose()?;
    let events = state
        .eventstore
        .read_stream(&caller, &stream, from, to)
        .await?;
    Ok(Json(
        json!({ "stream_id": stream, "events": events_json(&events) }),
    ))
}

/// `GET /api/v1/eventstore/all` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AllQuery {
    #[serde(default)]
    #[param(maximum = 9223372036854775807i64)]
    from_position: u64,
    #[param(maximum = 10000)]
    limit: Option<u32>,
}

/// `GET /api/v1/eventstore/all?from_position=&limit=` → `{"events", "next_position"}`.
#[utoipa::path(get, path = "/api/v1/eventstore/all", tag = "eventstore", params(AllQuery),
    responses((status = 200, description = "`{\"events\", \"next_position\"}`", body = Object)))]
pub async fn read_all(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    q: Result<Query<AllQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let from = position("from_position", q.from_position)?;
    let page = state
        .eventstore
        .read_all(&caller, from, limit(q.limit)?)
        .await?;
    Ok(Json(json!({
        "events": events_json(&page.events),
        "next_position": page.next_position,
    })))
}

/// `GET /api/v1/eventstore/types/{type}` query: RFC 3339 times.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TypeQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    #[param(maximum = 10000)]
    limit: Option<u32>,
}

/// `GET /api/v1/eventstore/types/{type}?from=&to=&limit=` → `{"events"}`, by
/// `metadata.timestamp` (from included, to excluded).
#[utoipa::path(get, path = "/api/v1/eventstore/types/{event_type}", tag = "eventstore",
    params(("event_type" = String, Path, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,200}$", description = "An event type"), TypeQuery),
    responses((status = 200, description = "`{\"events\"}`", body = Object)))]
pub async fn read_by_type(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    t: Result<Path<String>, PathRejection>,
    q: Result<Query<TypeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let event_type = EventType::parse(&path(t)?).map_err(invalid)?;
    let q = query(q)?;
    let events = state
        .eventstore
        .read_by_type(
            &caller,
            &event_type,
            q.from.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            q.to,
            limit(q.limit)?,
        )
        .await?;
    Ok(Json(json!({ "events": events_json(&events) })))
}

/// `GET /api/v1/eventstore/subscribe` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscribeQuery {
    #[param(maximum = 9223372036854775807i64)]
    from_position: Option<u64>,
}

/// `GET /api/v1/eventstore/subscribe?from_position=` as Server-Sent Events: every event from
/// that position (default 1) on, stored ones first, then each as it commits. Each SSE event
/// has `id:` its global position, `event:` its type and `data:` its JSON; a reconnect with
/// `Last-Event-ID` resumes after it. An `error` event ends a stream that failed.
#[utoipa::path(get, path = "/api/v1/eventstore/subscribe", tag = "eventstore", params(SubscribeQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this global position")),
    responses((status = 200, description = "Server-Sent Events, one per stored event", content_type = "text/event-stream", body = String)))]
pub async fn subscribe(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    q: Result<Query<SubscribeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| invalid("Last-Event-ID is not a global position"))?,
        ),
    };
    let from = resume.map_or(q.from_position.unwrap_or(1), |last| last + 1);
    let pass = state
        .notifications
        .stream_quota()
        .acquire(&caller.user_id)?;
    let stream = state.eventstore.subscribe(&caller, from)?;
    // The stream holds the caller's place in the per-user stream quota until dropped.
    let body = stream.map(move |item| {
        let _held = &pass;
        Ok::<Event, Infallible>(match item {
            Ok(e) => Event::default()
                .id(e.global_position.to_string())
                .event(e.event_type.as_str())
                .data(serde_json::to_string(&EventBody::from(&e)).unwrap_or_default()),
            Err(e) => Event::default()
                .event("error")
                .data(json!({ "message": e.to_string() }).to_string()),
        })
    });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response())
}
