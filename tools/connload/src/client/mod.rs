//! One held connection: a WebSocket (`/ws`) or an SSE stream (`/api/v1/events`), opened for
//! one user, read until told to stop. Each event's arrival is timed against its `created_at`
//! and its id checked against the previous one (ids are consecutive per user).
//!
//! `ws.rs` and `sse.rs` hold each kind; `stats.rs` is what one connection saw and `latency.rs`
//! the histograms every connection records into.

mod latency;
mod sse;
mod stats;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use latency::{KINDS, Latency, LatencySnapshot};
pub use stats::ConnStats;

/// How a connection talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `GET /ws`.
    Ws,
    /// `GET /api/v1/events`.
    Sse,
}

impl Transport {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Sse => "sse",
        }
    }
}

/// Where and how to connect; shared by every connection.
pub struct Target {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// `host:port` as written in the URL (the `Host` of the WebSocket handshake).
    pub authority: String,
    /// The resolved server address.
    pub addr: SocketAddr,
    /// Local addresses to connect from, round-robin (empty: the kernel picks).
    pub sources: Vec<IpAddr>,
    /// One SSE client per source address (or one, with no sources).
    pub sse_clients: Vec<reqwest::Client>,
    /// Longest wait from starting to connect to the first (`subscribed`) frame.
    pub open_timeout: Duration,
}

/// One connection to open.
pub struct Spec {
    /// Position among all connections (picks the source address).
    pub index: usize,
    /// The user's bearer token.
    pub token: String,
    /// Its stats, shared with the coordinator.
    pub stats: Arc<ConnStats>,
}

/// A frame or SSE `data:` as the server sends it: an event, or the `subscribed` / `resync`
/// greeting (no `created_at`).
#[derive(Deserialize)]
struct Frame {
    id: u64,
    created_at: Option<DateTime<Utc>>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Opens the connection, reports on `opened` (time to the first frame, or why it failed),
/// then reads until `stop`.
pub async fn hold(
    target: Arc<Target>,
    spec: Spec,
    latency: Arc<Latency>,
    opened: oneshot::Sender<Result<Duration, String>>,
    stop: CancellationToken,
) {
    let start = Instant::now();
    match spec.stats.transport {
        Transport::Ws => ws::hold_ws(&target, spec, &latency, opened, start, stop).await,
        Transport::Sse => sse::hold_sse(&target, spec, &latency, opened, start, stop).await,
    }
}

/// The local address connection `index` connects from (`None`: the kernel picks).
fn source(target: &Target, index: usize) -> Option<IpAddr> {
    (!target.sources.is_empty()).then(|| target.sources[index % target.sources.len()])
}

/// Ends a connection that never opened and tells the coordinator why.
fn fail(stats: &ConnStats, opened: oneshot::Sender<Result<Duration, String>>, reason: String) {
    stats.end(reason.clone());
    let _ = opened.send(Err(reason));
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clips_at_a_character_boundary() {
        assert_eq!(clip("hello", 10), "hello");
        assert_eq!(clip("hello", 3), "hel");
        assert_eq!(clip("héllo", 2), "h", "é is two bytes");
    }
}
