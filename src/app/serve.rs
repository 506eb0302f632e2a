//! The accept loop of the HTTP/gRPC port: hyper's connection builder with the limits that
//! `axum::serve` does not expose (request head size and read timeout, HTTP/2 keepalive), and a
//! graceful drain on shutdown.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::config::EdgeLimits;

/// How often an idle HTTP/2 connection (a gRPC stream, h2 SSE) is pinged, so a peer that
/// vanished without a FIN is found and its streams released.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// How long an HTTP/2 ping may go unanswered before the connection is closed.
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause after a failed accept (out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// hyper's read buffer for `max_header_bytes` of headers: twice the limit plus room for the
/// request line, so a head a little over the limit is still read whole and answered by
/// `api::limits` with our JSON 431 naming the limit; a larger one gets hyper's bare 431.
pub fn head_buffer(max_header_bytes: usize) -> usize {
    (2 * max_header_bytes + 16 * 1024).max(8 * 1024)
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting, asks every
/// connection to finish its requests, and returns once all are closed (the caller bounds the
/// wait).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: EdgeLimits,
    shutdown: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // A client that trickles its request head (slowloris) is cut off, holding no task.
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(head_buffer(limits.max_header_bytes));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(head_buffer(limits.max_header_bytes)).unwrap_or(u32::MAX),
        )
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        // Lets browsers open WebSockets over HTTP/2 (RFC 8441), as `axum::serve` does.
        .enable_connect_protocol();
    let connections = TaskTracker::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Small HTTP/2 frames must not wait for Nagle's algorithm: without TCP_NODELAY a
        // request can stall ~40 ms behind the peer's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let router = router.clone();
        // `Router<()>` answers requests itself; no per-connection route table is built.
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut router = router.clone();
            router.call(req)
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                done = conn.as_mut() => return log_end(done),
                _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            log_end(conn.await);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

fn log_end(done: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = done {
        // Timeouts, resets and refused heads: the client's doing, not an error of ours.
        tracing::debug!(error = %e, "connection ended");
    }
}
