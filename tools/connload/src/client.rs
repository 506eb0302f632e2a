//! One held connection: a WebSocket (`/ws`) or an SSE stream (`/api/v1/events`), opened for
//! one user, read until told to stop. Each event's arrival is timed against its `created_at`
//! and its id checked against the previous one (ids are consecutive per user).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ai_integration_service::error_text::error_chain;
use chrono::{DateTime, Utc};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

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

/// What one connection saw. Written only by its own task; read by the coordinator.
#[derive(Debug)]
pub struct ConnStats {
    /// How it is connected.
    pub transport: Transport,
    /// Index of its user.
    pub user: usize,
    /// Whether it opened (its first frame arrived).
    pub opened: AtomicBool,
    /// Events passed on with a new id.
    pub seen: AtomicU64,
    /// Times an id skipped past the next expected one.
    pub gaps: AtomicU64,
    /// Ids skipped over in those gaps.
    pub skipped: AtomicU64,
    /// Events whose id was at or below one already seen.
    pub duplicates: AtomicU64,
    /// The last id seen (the `subscribed` id until an event arrives).
    pub last: AtomicU64,
    /// Why the server or the network ended it before the program did.
    pub ended: Mutex<Option<String>>,
}

impl ConnStats {
    /// Stats of a connection not yet opened.
    pub fn new(transport: Transport, user: usize) -> Self {
        Self {
            transport,
            user,
            opened: AtomicBool::new(false),
            seen: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            last: AtomicU64::new(0),
            ended: Mutex::new(None),
        }
    }

    /// Whether the connection opened and is still open.
    pub fn is_open(&self) -> bool {
        self.opened.load(Ordering::Acquire) && self.end_reason().is_none()
    }

    /// Marks it open and tells the coordinator how long opening took.
    fn mark_open(&self, opened: oneshot::Sender<Result<Duration, String>>, start: Instant) {
        self.opened.store(true, Ordering::Release);
        let _ = opened.send(Ok(start.elapsed()));
    }

    /// The reason it ended, if it did.
    pub fn end_reason(&self) -> Option<String> {
        // Only whole `Option`s are ever stored, so a poisoned lock still holds a valid one.
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn end(&self, reason: String) {
        self.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
    }

    /// Checks `id` against the last one seen.
    fn observe(&self, id: u64) {
        let last = self.last.load(Ordering::Relaxed);
        if id <= last {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if id > last + 1 {
            self.gaps.fetch_add(1, Ordering::Relaxed);
            self.skipped.fetch_add(id - last - 1, Ordering::Relaxed);
        }
        self.last.store(id, Ordering::Relaxed);
        self.seen.fetch_add(1, Ordering::Relaxed);
    }
}

/// Event types timed separately (the three an echo task makes), then everything else.
pub const KINDS: [&str; 4] = ["TaskCreated", "TaskStarted", "TaskCompleted", "other"];

/// Stored -> delivered latency of every event, per transport and per event type, in
/// microseconds.
pub struct Latency {
    ws: Mutex<Histogram<u64>>,
    sse: Mutex<Histogram<u64>>,
    by_kind: [Mutex<Histogram<u64>>; 4],
    /// Events whose `created_at` was after their arrival (clock steps): recorded as 0.
    pub negative: AtomicU64,
}

/// Copies of the histograms of a [`Latency`].
pub struct LatencySnapshot {
    pub ws: Histogram<u64>,
    pub sse: Histogram<u64>,
    /// In the order of [`KINDS`].
    pub by_kind: Vec<Histogram<u64>>,
}

impl Latency {
    /// Empty histograms tracking up to `max_us`.
    pub fn new(max_us: u64) -> anyhow::Result<Self> {
        let h = || Histogram::new_with_bounds(1, max_us, 3).map(Mutex::new);
        Ok(Self {
            ws: h()?,
            sse: h()?,
            by_kind: [h()?, h()?, h()?, h()?],
            negative: AtomicU64::new(0),
        })
    }

    fn record(
        &self,
        transport: Transport,
        kind: Option<&str>,
        created_at: DateTime<Utc>,
        arrived: DateTime<Utc>,
    ) {
        let us = (arrived - created_at)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        if us < 0 {
            self.negative.fetch_add(1, Ordering::Relaxed);
        }
        let us = us.max(0).unsigned_abs();
        let h = match transport {
            Transport::Ws => &self.ws,
            Transport::Sse => &self.sse,
        };
        lock(h).saturating_record(us);
        let k = KINDS[..3]
            .iter()
            .position(|k| Some(*k) == kind)
            .unwrap_or(3);
        lock(&self.by_kind[k]).saturating_record(us);
    }

    /// Copies of the histograms.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            ws: lock(&self.ws).clone(),
            sse: lock(&self.sse).clone(),
            by_kind: self.by_kind.iter().map(|h| lock(h).clone()).collect(),
        }
    }
}

/// A histogram's lock; recording cannot panic halfway, so a poisoned one is still whole.
fn lock(h: &Mutex<Histogram<u64>>) -> std::sync::MutexGuard<'_, Histogram<u64>> {
    h.lock().unwrap_or_else(|e| e.into_inner())
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
        Transport::Ws => hold_ws(&target, spec, &latency, opened, start, stop).await,
        Transport::Sse => hold_sse(&target, spec, &latency, opened, start, stop).await,
    }
}

fn source(target: &Target, index: usize) -> Option<IpAddr> {
    (!target.sources.is_empty()).then(|| target.sources[index % target.sources.len()])
}

async fn hold_ws(
    target: &Target,
    spec: Spec,
    latency: &Latency,
    opened: oneshot::Sender<Result<Duration, String>>,
    start: Instant,
    stop: CancellationToken,
) {
    let stats = spec.stats.clone();
    let open = tokio::time::timeout(target.open_timeout, open_ws(target, &spec));
    let mut ws = match open.await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return fail(&stats, opened, e),
        Err(_) => return fail(&stats, opened, "ws: timed out opening".into()),
    };
    stats.mark_open(opened, start);
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            msg = ws.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(text))) => {
                let arrived = Utc::now();
                match serde_json::from_str::<Frame>(text.as_str()) {
                    Ok(Frame {
                        id,
                        created_at: Some(at),
                        kind,
                    }) => {
                        latency.record(Transport::Ws, kind.as_deref(), at, arrived);
                        stats.observe(id);
                    }
                    Ok(_) => {}
                    Err(e) => return stats.end(format!("ws: bad frame: {e}")),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return stats.end(match frame {
                    Some(f) => format!("ws close {}: {}", u16::from(f.code), f.reason),
                    None => "ws close (no code)".into(),
                });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return stats.end(format!("ws error: {e}")),
            None => return stats.end("ws: connection ended without a close frame".into()),
        }
    }
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// TCP connect (from the chosen source address), handshake, and the `subscribed` frame.
async fn open_ws(target: &Target, spec: &Spec) -> Result<WsStream, String> {
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("ws socket: {e}"))?;
    if let Some(ip) = source(target, spec.index) {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("ws bind {ip}: {e}"))?;
    }
    let tcp = socket
        .connect(target.addr)
        .await
        .map_err(|e| format!("ws connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let url = format!("ws://{}/ws?access_token={}", target.authority, spec.token);
    let request = url
        .into_client_request()
        .map_err(|e| format!("ws request: {e}"))?;
    // Small reads: the client only reads small event frames, and 10,000 default 128 KiB
    // buffers would cost this process over a gigabyte.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(resp) => format!("ws handshake: http {}", resp.status()),
            e => format!("ws handshake: {e}"),
        })?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let first: Frame = serde_json::from_str(text.as_str())
                    .map_err(|e| format!("ws: bad first frame: {e}"))?;
                spec.stats.last.store(first.id, Ordering::Relaxed);
                return Ok(ws);
            }
            Some(Ok(Message::Close(Some(f)))) => {
                return Err(format!("ws close {}: {}", u16::from(f.code), f.reason));
            }
            Some(Ok(Message::Close(None))) | None => {
                return Err("ws: closed before the first frame".into());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("ws error: {e}")),
        }
    }
}

async fn hold_sse(
    target: &Target,
    spec: Spec,
    latency: &Latency,
    opened: oneshot::Sender<Result<Duration, String>>,
    start: Instant,
    stop: CancellationToken,
) {
    let stats = spec.stats.clone();
    let client = &target.sse_clients[spec.index % target.sse_clients.len()];
    let url = format!("{}/api/v1/events?access_token={}", target.base, spec.token);
    let open = async {
        let resp = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("sse connect: {}", error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(format!(
                "sse: http {}: {}",
                status.as_u16(),
                clip(&body, 120)
            ));
        }
        let mut events = resp.bytes_stream().eventsource();
        match events.next().await {
            Some(Ok(e)) if e.event == "subscribed" || e.event == "resync" => {
                let first: Frame = serde_json::from_str(&e.data)
                    .map_err(|e| format!("sse: bad first event: {e}"))?;
                stats.last.store(first.id, Ordering::Relaxed);
                Ok(events)
            }
            Some(Ok(e)) => Err(format!("sse: first event {:?}: {}", e.event, e.data)),
            Some(Err(e)) => Err(format!("sse: {e}")),
            None => Err("sse: ended before the first event".into()),
        }
    };
    let mut events = match tokio::time::timeout(target.open_timeout, open).await {
        Ok(Ok(events)) => events,
        Ok(Err(e)) => return fail(&stats, opened, e),
        Err(_) => return fail(&stats, opened, "sse: timed out opening".into()),
    };
    stats.mark_open(opened, start);
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = events.next() => next,
        };
        match next {
            Some(Ok(e)) if e.event == "error" => {
                return stats.end(format!("sse error event: {}", e.data));
            }
            Some(Ok(e)) => {
                let arrived = Utc::now();
                match serde_json::from_str::<Frame>(&e.data) {
                    Ok(Frame {
                        id,
                        created_at: Some(at),
                        kind,
                    }) => {
                        latency.record(Transport::Sse, kind.as_deref(), at, arrived);
                        stats.observe(id);
                    }
                    Ok(_) => {}
                    Err(err) => return stats.end(format!("sse: bad event data: {err}")),
                }
            }
            Some(Err(e)) => return stats.end(format!("sse: {e}")),
            None => return stats.end("sse: stream ended".into()),
        }
    }
}

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
