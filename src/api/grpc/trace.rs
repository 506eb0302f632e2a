//! The layer that gives each gRPC call a server span, continuing the caller's trace from its
//! `traceparent` metadata. Health checks and reflection are not traced; with traces off it only
//! checks a flag.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::telemetry::traces;

/// Services polled by infrastructure or tools, whose spans would only crowd the traces.
const UNTRACED: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Runs the call inside its server span (see [`traces::grpc_server_span`]). The status is the
/// `grpc-status` the response starts with: an error's, or OK for a call whose status comes in
/// the trailers (a stream's later end is not part of the span).
pub async fn server_span(request: Request, next: Next) -> Response {
    if !traces::enabled() {
        return next.run(request).await;
    }
    // `/package.Service/Method`.
    let Some((service, method)) = request.uri().path()[1..].split_once('/') else {
        return next.run(request).await;
    };
    if UNTRACED.contains(&service) {
        return next.run(request).await;
    }
    let span = traces::grpc_server_span(service, method, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(if response.status().is_success() { 0 } else { 2 });
    traces::grpc_status(&span, code);
    response
}
