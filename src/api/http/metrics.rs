//! `GET /metrics` (Prometheus text format) and the layer that times every request.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use axum::Router;
use axum::routing::get;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::service::{MetricsService, ServiceError};
use crate::telemetry::metrics;

/// The scrape.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    exposition(&state.metrics).await
}

/// A router with only the scrape, for `METRICS_PORT`.
pub fn standalone(metrics: MetricsService) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<MetricsService>| async move { exposition(&m).await }),
        )
        .with_state(metrics)
}

async fn exposition(metrics: &MetricsService) -> Response {
    match metrics.render().await {
        Some(text) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        None => ApiError::from(ServiceError::NotFound(
            "metrics are turned off (METRICS_ENABLED=false)".into(),
        ))
        .into_response(),
    }
}

/// Counts and times a request under its route template (bounded: never the raw path). A
/// stream's time is until its response starts. gRPC calls are left to the gRPC routes' own
/// layer, which reads their status codes.
pub async fn track(request: Request, next: Next) -> Response {
    let is_grpc = request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics::http_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
