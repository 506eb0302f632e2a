//! The layer that gives each HTTP request a server span, continuing the caller's trace from its
//! `traceparent` header. Probes and scrapes are not traced; with traces off it only checks a
//! flag.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::telemetry::traces;

/// Routes polled by infrastructure, whose spans would only crowd the traces.
const UNTRACED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Runs the request inside its server span (see [`traces::http_server_span`]).
pub async fn server_span(request: Request, next: Next) -> Response {
    if !traces::enabled() {
        return next.run(request).await;
    }
    let Some(route) = request.extensions().get::<MatchedPath>().cloned() else {
        return next.run(request).await;
    };
    if UNTRACED.contains(&route.as_str()) {
        return next.run(request).await;
    }
    let span =
        traces::http_server_span(request.method().as_str(), route.as_str(), request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    traces::http_response(&span, response.status().as_u16());
    response
}
