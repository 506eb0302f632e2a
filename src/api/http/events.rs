//! `GET /api/v1/events`: Server-Sent Events.
//!
//! Each event: `id:` the per-user id, `event:` its type, `data:` the JSON of [`event_json`].
//! Resume with the `Last-Event-ID` header (browsers send it on reconnect) or `since`. The
//! first event is `subscribed` (history recovered) or `resync` (it was not: older than
//! retention or unknown; refetch state), and a stream closed by the server ends with an
//! `error` event saying why. Authentication: `Authorization: Bearer`, or for browsers (whose
//! EventSource sets no headers) a one-time `ticket` (see `tickets.rs`); the `access_token`
//! parameter still works but puts the JWT in the URL, where logs keep it.

use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::tickets::stream_caller;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::auth::AuthError;
use crate::domain::{MAX_EVENT_BYTES, StoredEvent, TaskId, UserId};
use crate::service::{Scope, ServiceError, StreamItem, StreamRequest};
use crate::store::Transport;

/// Query parameters of `/api/v1/events` and `/ws`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this per-user id.
    since: Option<String>,
    /// Only this task's events.
    task_id: Option<String>,
    /// Admins: this user's events.
    user_id: Option<String>,
    /// Admins: everyone's events (live only).
    all: Option<bool>,
    /// A one-time stream ticket (`POST /api/v1/events/ticket`), for clients that cannot set
    /// headers (EventSource, browser WebSocket).
    pub ticket: Option<String>,
    /// The token itself, for the same clients. Discouraged: URLs end up in logs.
    pub access_token: Option<String>,
}

impl EventsQuery {
    /// Parses the parameters (`last_event_id`, when given, wins over `since`).
    pub fn request(
        &self,
        last_event_id: Option<&str>,
        transport: Transport,
        expires_at: u64,
    ) -> Result<StreamRequest, ServiceError> {
        let since = match last_event_id.or(self.since.as_deref()) {
            None => None,
            Some(raw) => Some(raw.trim().parse::<u64>().map_err(|_| {
                ServiceError::Invalid(format!(
                    "since / Last-Event-ID {raw:?} is not an event id (a non-negative integer)"
                ))
            })?),
        };
        let task_id = self.task_id.as_deref().map(TaskId::parse).transpose()?;
        let scope = match (&self.user_id, self.all.unwrap_or(false)) {
            (Some(_), true) => {
                return Err(ServiceError::Invalid(
                    "give either user_id or all=true, not both".into(),
                ));
            }
            (Some(u), false) => Scope::User(UserId::parse(u)?),
            (None, true) => Scope::All,
            (None, false) => Scope::Own,
        };
        Ok(StreamRequest {
            since,
            task_id,
            scope,
            until_terminal: false,
            transport,
            expires_at: Some(expires_at),
        })
    }
}

/// The bearer token of `headers`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    h.strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .map(str::trim)
}

/// An event as clients see it: `{"created_at", "data", "id", "task_id", "type", "user_id"}`
/// (keys in the order a JSON object map sorts them). Fields are borrowed: this runs once per
/// event and connection, and building a `Value` cloned `data` each time.
#[derive(Serialize)]
struct WireEvent<'a> {
    created_at: &'a DateTime<Utc>,
    data: &'a Value,
    id: u64,
    task_id: &'a TaskId,
    #[serde(rename = "type")]
    kind: &'static str,
    user_id: &'a UserId,
}

/// An event as clients see it: `{"id", "task_id", "user_id", "type", "data", "created_at"}`.
/// Data that would make it larger than 1 MiB is replaced by a note to fetch the task.
pub fn event_json(e: &StoredEvent) -> String {
    let text = wire_json(e, &e.event.data);
    if text.len() <= MAX_EVENT_BYTES {
        return text;
    }
    let omitted = json!({
        "omitted": "event larger than 1 MiB; fetch the task for its state",
        "bytes": text.len(),
    });
    wire_json(e, &omitted)
}

/// `e` with `data` as its data, as JSON.
fn wire_json(e: &StoredEvent, data: &Value) -> String {
    let wire = WireEvent {
        created_at: &e.event.created_at,
        data,
        id: e.id,
        task_id: &e.event.task_id,
        kind: e.event.kind.as_str(),
        user_id: &e.event.user_id,
    };
    // Serializing borrowed plain data cannot fail (no maps with non-string keys).
    serde_json::to_string(&wire).unwrap_or_default()
}

/// The JSON of the first item: `{"type": "subscribed" | "resync", "recovered", "id"}`.
pub fn subscribed_json(recovered: bool, last: u64) -> Value {
    json!({
        "type": if recovered { "subscribed" } else { "resync" },
        "recovered": recovered,
        "id": last,
    })
}

/// `GET /api/v1/events?since&task_id&user_id&all&ticket&access_token`.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this id (wins over `since`)")),
    responses((status = 200, description = "Server-Sent Events: `subscribed` or `resync`, then each task event; `error` before the server ends it", content_type = "text/event-stream", body = String)))]
pub async fn sse(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("invalid"));
    // Parsed before authenticating, so that a mistake does not use up a ticket.
    let mut req = q.request(last_event_id, Transport::Sse, 0)?;
    let (caller, exp) = stream_caller(&state, &headers, &q)
        .await?
        .ok_or(AuthError::Missing)?;
    req.expires_at = Some(exp);
    // Ids of an all-users stream are per owner: no single id to resume from.
    let resumable = req.scope != Scope::All;
    let stream = state.notifications.open(&caller, req, None).await?;
    let body = futures::stream::unfold(stream, move |mut s| async move {
        let item = s.next().await?;
        Some((Ok::<Event, Infallible>(sse_event(item, resumable)), s))
    });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(state.notifications.keepalive()))
        .into_response())
}

/// One stream item as an SSE event (with its id when the stream is resumable).
pub(super) fn sse_event(item: StreamItem, resumable: bool) -> Event {
    match item {
        StreamItem::Subscribed { recovered, last } => {
            let data = subscribed_json(recovered, last);
            let name = if recovered { "subscribed" } else { "resync" };
            let e = Event::default().event(name).data(data.to_string());
            if resumable { e.id(last.to_string()) } else { e }
        }
        StreamItem::Event(e) => {
            let out = Event::default()
                .event(e.event.kind.as_str())
                .data(event_json(&e));
            // A live-only event has no id to resume from: it must not move Last-Event-ID.
            if resumable && !e.is_live_only() {
                out.id(e.id.to_string())
            } else {
                out
            }
        }
        StreamItem::Closed(reason) => Event::default()
            .event("error")
            .data(json!({ "reason": reason.code(), "message": reason.message() }).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TaskEvent, TaskEventType};

    fn event(data: Value) -> StoredEvent {
        StoredEvent {
            id: 7,
            event: TaskEvent {
                task_id: TaskId::new(),
                user_id: UserId::parse("alice").expect("valid user"),
                kind: TaskEventType::TaskCompleted,
                data,
                created_at: crate::clock::now(),
            },
        }
    }

    #[test]
    fn event_json_has_the_documented_shape() {
        let e = event(json!({"status": "completed", "result": {"echo": 1}}));
        let expected = json!({
            "id": 7,
            "task_id": e.event.task_id,
            "user_id": "alice",
            "type": "TaskCompleted",
            "data": e.event.data,
            "created_at": e.event.created_at,
        });
        // Same text as the object map would print, key order included.
        assert_eq!(event_json(&e), expected.to_string());
    }

    #[test]
    fn data_over_one_mebibyte_is_replaced_by_a_note() {
        let e = event(json!({ "text": "x".repeat(MAX_EVENT_BYTES) }));
        let v: Value = serde_json::from_str(&event_json(&e)).expect("json");
        assert_eq!(v["id"], 7);
        assert!(v["data"]["omitted"].as_str().is_some(), "{v}");
        assert!(v["data"]["bytes"].as_u64().unwrap_or(0) > MAX_EVENT_BYTES as u64);
    }
}
