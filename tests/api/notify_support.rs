//! Clients for the event streams: SSE (eventsource-stream over reqwest), WebSocket
//! (tokio-tungstenite) and raw sockets that read slowly.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event as SseEvent, Eventsource};
use futures::{SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;

/// How long a test waits for one stream item.
pub const WAIT: Duration = Duration::from_secs(15);

/// Parsed SSE events.
pub type Sse = Pin<Box<dyn Stream<Item = SseEvent> + Send>>;

/// A WebSocket client.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An echo task that waits `delay_ms` first.
pub fn echo(delay_ms: u64) -> Value {
    json!({"type": "echo", "payload": {"text": "hi", "delay_ms": delay_ms}})
}

/// `GET /api/v1/events?{query}` with a bearer token (and `Last-Event-ID`).
pub async fn sse_response(
    app: &TestApp,
    token: &str,
    query: &str,
    last_event_id: Option<u64>,
) -> reqwest::Response {
    let mut req = app
        .http
        .get(format!("{}/api/v1/events?{query}", app.base))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    req.send().await.expect("SSE request")
}

/// The events of a 200 SSE response.
pub fn sse_events(resp: reqwest::Response) -> Sse {
    assert_eq!(resp.status(), 200, "SSE status");
    let bytes = futures::stream::unfold(resp, |mut r| async move {
        match r.chunk().await {
            Ok(Some(b)) => Some((Ok::<_, reqwest::Error>(b), r)),
            _ => None,
        }
    });
    Box::pin(bytes.eventsource().filter_map(|e| async move { e.ok() }))
}

/// Opens an SSE stream as `user`.
pub async fn sse(app: &TestApp, user: &str, query: &str, last_event_id: Option<u64>) -> Sse {
    sse_events(sse_response(app, &app.token(user), query, last_event_id).await)
}

/// The next SSE event (panics after [`WAIT`] or at the end of the stream).
pub async fn next_sse(s: &mut Sse) -> SseEvent {
    tokio::time::timeout(WAIT, s.next())
        .await
        .expect("SSE event in time")
        .expect("SSE stream still open")
}

/// The next task event's JSON, skipping `subscribed`.
pub async fn next_task_event(s: &mut Sse) -> Value {
    loop {
        let e = next_sse(s).await;
        if e.event.starts_with("Task") {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(e.id, v["id"].to_string(), "SSE id is the event id");
            assert_eq!(e.event, v["type"].as_str().unwrap());
            return v;
        }
        assert_eq!(e.event, "subscribed", "unexpected {e:?}");
    }
}

/// Task events until `task_id`'s terminal one.
pub async fn until_terminal(s: &mut Sse, task_id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let v = next_task_event(s).await;
        let done = v["task_id"] == task_id
            && matches!(
                v["type"].as_str(),
                Some("TaskCompleted" | "TaskFailed" | "TaskCancelled")
            );
        out.push(v);
        if done {
            return out;
        }
    }
}

/// The `type` of each event.
pub fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// The `id` of each event.
pub fn ids(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["id"].as_u64().unwrap()).collect()
}

/// The WebSocket URL of `/ws?{query}`.
pub fn ws_url(app: &TestApp, query: &str) -> String {
    format!("{}/ws?{query}", app.base.replacen("http", "ws", 1))
}

/// Connects to `/ws?{query}` with extra headers.
pub async fn ws_with(app: &TestApp, query: &str, headers: &[(&str, String)]) -> Ws {
    let mut req = ws_url(app, query).into_client_request().unwrap();
    for (k, v) in headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName = k.parse().unwrap();
        req.headers_mut()
            .insert(name, v.parse().expect("header value"));
    }
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("WebSocket connects");
    ws
}

/// Connects to `/ws` as `user` with `access_token`.
pub async fn ws(app: &TestApp, user: &str, query: &str) -> Ws {
    let q = format!("access_token={}&{query}", app.token(user));
    ws_with(app, &q, &[]).await
}

/// The next text frame as JSON (pings skipped); panics on close.
pub async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
            .expect("socket open")
            .expect("frame");
        match m {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the close frame; returns its code and reason.
pub async fn close_of<S>(ws: &mut WebSocketStream<S>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time");
        match m {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
            Some(Err(e)) => panic!("socket error before close: {e}"),
            Some(Ok(_)) => continue,
        }
    }
}

/// Task events of a WebSocket until `task_id`'s terminal one.
pub async fn ws_until_terminal(ws: &mut Ws, task_id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let v = next_frame(ws).await;
        if !v["type"].as_str().unwrap_or("").starts_with("Task") {
            continue;
        }
        let done = v["task_id"] == task_id
            && matches!(
                v["type"].as_str(),
                Some("TaskCompleted" | "TaskFailed" | "TaskCancelled")
            );
        out.push(v);
        if done {
            return out;
        }
    }
}

/// Sends a text frame.
pub async fn send_text(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

/// A TCP connection to the app with a small receive buffer, so a client that does not read
/// stalls the server quickly.
pub async fn slow_socket(app: &TestApp) -> TcpStream {
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    socket.connect(addr).await.expect("connect")
}
