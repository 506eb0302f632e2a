//! A WebSocket (`/ws`): TCP from the chosen source address, the handshake, the `subscribed`
//! frame, then every event frame until told to stop.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use super::{Frame, Latency, Spec, Target, Transport, fail, source};

/// Holds one WebSocket until `stop` (see [`super::hold`]).
pub(super) async fn hold_ws(
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
