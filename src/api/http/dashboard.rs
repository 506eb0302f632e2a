//! `/dashboard`: the operator dashboard page (HTML, JavaScript and CSS compiled into the
//! binary, no build step) and `GET /api/v1/admin/dashboard/stream`, its one live stream.
//!
//! The stream is Server-Sent Events, admin only, authenticated by `Authorization: Bearer`
//! (the page reads it with `fetch`, so the token never goes into a URL). Its first event is
//! `history` (`{"points", "latest"}`: the last 15 minutes), then a `tick` (`{"point",
//! "state"}`) every second. It ends with an `error` event when the token expires.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::bearer;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::auth::AuthError;
use crate::service::DashboardFeed;

/// The page.
const PAGE: &str = include_str!("dashboard/index.html");
/// Its script.
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
/// Its styles.
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// The page may carry a token in its first URL: no referrer leaves it, and no cache keeps it.
const PAGE_HEADERS: [(header::HeaderName, &str); 3] = [
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// `GET /dashboard`.
#[utoipa::path(get, path = "/dashboard", tag = "pages",
    responses((status = 200, description = "The operator dashboard", content_type = "text/html", body = String)))]
pub async fn page() -> impl IntoResponse {
    (PAGE_HEADERS, Html(PAGE))
}

/// `GET /dashboard/dashboard.js`.
#[utoipa::path(get, path = "/dashboard/dashboard.js", tag = "pages",
    responses((status = 200, description = "The dashboard's script", content_type = "text/javascript", body = String)))]
pub async fn script() -> impl IntoResponse {
    let kind = [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")];
    (PAGE_HEADERS, kind, SCRIPT)
}

/// `GET /dashboard/dashboard.css`.
#[utoipa::path(get, path = "/dashboard/dashboard.css", tag = "pages",
    responses((status = 200, description = "The dashboard's styles", content_type = "text/css", body = String)))]
pub async fn style() -> impl IntoResponse {
    let kind = [(header::CONTENT_TYPE, "text/css; charset=utf-8")];
    (PAGE_HEADERS, kind, STYLE)
}

/// `GET /api/v1/admin/dashboard/stream`: 401 without a valid token, 403 for a non-admin.
#[utoipa::path(get, path = "/api/v1/admin/dashboard/stream", tag = "admin",
    responses((status = 200, description = "Server-Sent Events: `history`, then a `tick` a second", content_type = "text/event-stream", body = String)))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = bearer(&headers).ok_or(AuthError::Missing)?;
    let (caller, expires_at) = state.keys.verify_with_expiry(token)?;
    let feed = state.dashboard.subscribe(&caller)?;
    let live = LiveFeed::new(feed, expires_at);
    let events = futures::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok::<_, Infallible>(event), live))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(([(header::CACHE_CONTROL, "no-store")], sse).into_response())
}

/// A dashboard's events: its history, then each shared frame, until shutdown or the token
/// expires.
struct LiveFeed {
    history: Option<String>,
    frames: watch::Receiver<Option<Arc<str>>>,
    shutdown: CancellationToken,
    /// When the token expires; `None` once the stream said so.
    expires: Option<Instant>,
}

impl LiveFeed {
    fn new(feed: DashboardFeed, expires_at: u64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Self {
            history: Some(feed.history),
            frames: feed.frames,
            shutdown: feed.shutdown,
            expires: Some(Instant::now() + Duration::from_secs(expires_at.saturating_sub(now))),
        }
    }

    async fn next(&mut self) -> Option<Event> {
        if let Some(history) = self.history.take() {
            return Some(Event::default().event("history").data(history));
        }
        let expires = self.expires?;
        loop {
            tokio::select! {
                changed = self.frames.changed() => {
                    changed.ok()?;
                    // `None`: a tick that found nobody watching; the next one will send.
                    if let Some(frame) = self.frames.borrow_and_update().clone() {
                        return Some(Event::default().event("tick").data(&*frame));
                    }
                }
                _ = tokio::time::sleep_until(expires) => {
                    self.expires = None;
                    return Some(Event::default().event("error").data("token expired"));
                }
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }
}
