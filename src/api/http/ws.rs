//! `/ws`: the event stream over WebSocket.
//!
//! Authentication, in this order: `Authorization: Bearer`, a one-time `ticket` query parameter
//! (`POST /api/v1/events/ticket`), the `access_token` query parameter (discouraged: URLs end up
//! in logs), the subprotocol `bearer.<JWT>` (offered together with `ais.v1`, which the server
//! selects), or, with none of those, a first text frame `{"type": "auth", "token": "<JWT>"}`
//! within 10 seconds. Frames: first `{"type": "subscribed" | "resync", "recovered", "id"}`,
//! then one JSON text frame per event (the shape of [`event_json`]). The server pings every
//! `NOTIFICATION_KEEPALIVE` and closes with a code and reason:
//! 4008 slow consumer, 4001 token expired, 4009 no pong within `WS_PONG_TIMEOUT` (a dead or
//! stalled client), 1001 shutting down, 1011 database unavailable, 1013 too many connections
//! (this instance's, or the user's `MAX_STREAMS_PER_USER`), 1008 authentication or permission
//! failed, 1009 a client message over 64 KiB.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::events::{EventsQuery, event_json, subscribed_json};
use super::tickets::stream_caller;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::auth::{Caller, JwtKeys};
use crate::service::{
    CloseReason, EventStream, NotificationService, ServiceError, StreamItem, StreamRequest,
};
use crate::store::Transport;

/// The subprotocol the server speaks.
const PROTOCOL: &str = "ais.v1";
/// Prefix of the subprotocol that carries a token.
const TOKEN_PROTOCOL: &str = "bearer.";
/// How long a connection without credentials has to send its auth frame.
const AUTH_WAIT: Duration = Duration::from_secs(10);
/// How long the server waits to get a close frame out to a client that does not read.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Read buffer of each connection. Clients only send pongs and an auth frame (a few hundred
/// bytes); tungstenite's default of 128 KiB is zero-filled on the first read, which made an idle
/// connection cost ~150 KiB of RSS. Larger frames still grow the buffer as needed. 1 KiB instead
/// of 4 KiB took an idle WebSocket from 10.5 to 7.2 KiB of RSS (BENCHMARKS.md).
const READ_BUFFER: usize = 1024;
/// Largest message a client may send: an auth frame with a token, with room to spare.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Close codes (RFC 6455 and the application range 4000-4999).
mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const TOKEN_EXPIRED: u16 = 4001;
    pub const SLOW_CONSUMER: u16 = 4008;
    pub const NO_PONG: u16 = 4009;
}

fn close_code(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::SlowConsumer => code::SLOW_CONSUMER,
        CloseReason::TokenExpired => code::TOKEN_EXPIRED,
        CloseReason::ShuttingDown => code::GOING_AWAY,
        CloseReason::TaskFinished => code::NORMAL,
        CloseReason::Unavailable => code::INTERNAL,
    }
}

/// The first frame of a client that authenticates in-band.
#[derive(Deserialize)]
struct AuthFrame {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

/// Where an upgraded connection starts from. It is boxed into the upgrade callback: the
/// callback and its future live as long as the socket (an async fn keeps its arguments for its
/// whole life), so whatever they hold inline costs memory on every idle connection.
struct Start {
    /// Opens the stream; all the connection needs of the application state.
    notifications: NotificationService,
    /// What the client asked for (parsed before upgrading, so mistakes get a plain 400).
    req: StreamRequest,
    auth: Auth,
    /// One of the instance's connection slots, or why there is none.
    slot: Result<OwnedSemaphorePermit, ServiceError>,
}

/// How a connection is authenticated.
enum Auth {
    /// By its request: the caller and when the token expires.
    Verified(Caller, u64),
    /// By its first frame, checked with these keys.
    FirstFrame(Box<JwtKeys>),
}

/// `GET /ws?since&task_id&user_id&all&ticket&access_token`.
#[utoipa::path(get, path = "/ws", tag = "events", params(super::events::EventsQuery),
    responses((status = 101, description = "Switched to WebSocket: JSON text frames of the events")))]
pub async fn ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // A plain GET (no upgrade headers) gets our JSON error, not axum's plain-text one.
    let upgrade = upgrade.map_err(|r| {
        ServiceError::Invalid(format!("not a WebSocket upgrade: {}", r.body_text()))
    })?;
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let req = q.request(None, Transport::WebSocket, 0)?;
    let protocol_token = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix(TOKEN_PROTOCOL))
        .map(str::to_owned);
    // Credentials that were sent must be good: refuse the upgrade with a 401 otherwise.
    let auth = match stream_caller(&state, &headers, &q).await? {
        Some((caller, exp)) => Auth::Verified(caller, exp),
        None => match protocol_token {
            Some(t) => {
                let (caller, exp) = state.keys.verify_with_expiry(&t)?;
                Auth::Verified(caller, exp)
            }
            None => Auth::FirstFrame(Box::new(state.keys.clone())),
        },
    };
    // Over the limit, the client still gets a WebSocket, closed at once with the reason
    // (browsers show no HTTP status for a refused upgrade).
    let start = Box::new(Start {
        slot: state.notifications.reserve(),
        notifications: state.notifications,
        req,
        auth,
    });
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| serve(socket, start)))
}

async fn serve(mut socket: WebSocket, start: Box<Start>) {
    let keepalive = start.notifications.keepalive();
    let pong_timeout = start.notifications.pong_timeout();
    // The one-off steps are boxed so that their state is not part of this long-lived future.
    let mut stream = match Box::pin(open(&mut socket, *start)).await {
        Ok(s) => s,
        Err((code, reason)) => return Box::pin(close(socket, code, &reason)).await,
    };
    let mut ping = tokio::time::interval(keepalive);
    ping.tick().await;
    // Since when a ping has gone unanswered: a client that sends nothing back (no pong, no
    // frame) within `pong_timeout` is dead or stalled, and would hold its slot for ever.
    let mut unanswered: Option<Instant> = None;
    loop {
        let pong_due = unanswered.map(|since| since + pong_timeout);
        tokio::select! {
            item = stream.next() => {
                let frame = match item {
                    None => return,
                    Some(StreamItem::Subscribed { recovered, last }) => {
                        subscribed_json(recovered, last).to_string()
                    }
                    Some(StreamItem::Event(e)) => event_json(&e),
                    Some(StreamItem::Closed(reason)) => {
                        drop(stream);
                        let code = close_code(reason);
                        return Box::pin(close(socket, code, reason.message())).await;
                    }
                };
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                unanswered.get_or_insert_with(Instant::now);
            }
            _ = until(pong_due) => {
                drop(stream);
                let reason = format!(
                    "no pong within {} (WS_PONG_TIMEOUT)",
                    humantime::format_duration(pong_timeout)
                );
                return Box::pin(close(socket, code::NO_PONG, &reason)).await;
            }
            incoming = socket.recv() => match incoming {
                // Pongs, and anything the client says, show it is alive; a close or error
                // ends it.
                Some(Ok(Message::Close(_))) | None => return,
                Some(Err(e)) if too_big(&e) => {
                    drop(stream);
                    return Box::pin(close(socket, code::TOO_BIG, "message too big")).await;
                }
                Some(Err(_)) => return,
                Some(Ok(_)) => unanswered = None,
            },
        }
    }
}

/// Takes the slot, authenticates and opens the stream; on failure, the close code and reason.
async fn open(socket: &mut WebSocket, start: Start) -> Result<EventStream, (u16, String)> {
    let Start {
        notifications,
        mut req,
        auth,
        slot,
    } = start;
    let slot = slot.map_err(|e| (code::TRY_AGAIN_LATER, e.to_string()))?;
    let (caller, exp) = match auth {
        Auth::Verified(caller, exp) => (caller, exp),
        Auth::FirstFrame(keys) => first_frame_auth(socket, &keys)
            .await
            .map_err(|msg| (code::POLICY, msg))?,
    };
    req.expires_at = Some(exp);
    notifications
        .open(&caller, req, Some(slot))
        .await
        .map_err(|e| {
            let c = match e {
                ServiceError::Unavailable(_) | ServiceError::Internal => code::INTERNAL,
                ServiceError::Busy { .. } => code::TRY_AGAIN_LATER,
                _ => code::POLICY,
            };
            (c, e.to_string())
        })
}

/// Resolves at `at`, never without one.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for `{"type": "auth", "token": ...}`.
async fn first_frame_auth(socket: &mut WebSocket, keys: &JwtKeys) -> Result<(Caller, u64), String> {
    let first = tokio::time::timeout(AUTH_WAIT, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(t))) => return Some(t),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    })
    .await
    .map_err(|_| "unauthenticated: no credentials and no auth frame".to_owned())?
    .ok_or_else(|| "unauthenticated: no credentials and no auth frame".to_owned())?;
    let frame: AuthFrame = serde_json::from_str(first.as_str())
        .map_err(|_| "unauthenticated: expected {\"type\":\"auth\",\"token\":...}".to_owned())?;
    if frame.kind != "auth" {
        return Err("unauthenticated: expected {\"type\":\"auth\",\"token\":...}".into());
    }
    keys.verify_with_expiry(&frame.token)
        .map_err(|e| format!("unauthenticated: {e}"))
}

/// Whether a read failed because the client's message was over [`MAX_CLIENT_MESSAGE`].
fn too_big(e: &axum::Error) -> bool {
    // axum wraps tungstenite's error; the chain of sources reaches it.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(tokio_tungstenite::tungstenite::Error::Capacity(_)) = s.downcast_ref() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Sends a close frame (reason cut to the protocol's 123 bytes) and lets the socket go.
async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(&reason[..end]),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, socket.send(Message::Close(Some(frame)))).await;
}
