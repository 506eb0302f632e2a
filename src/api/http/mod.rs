//! HTTP/JSON routes.

mod admin;
pub mod events;
mod jobs;
mod json;
mod metrics;

pub use metrics::{standalone as metrics_only, track as track_metrics};
mod page;
mod providers;
mod queues;
mod task_types;
mod tasks;
mod tickets;
mod trace;
mod ws;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};

use super::AppState;
use super::error::ApiError;

/// Largest request body for one task: the 1 MiB payload limit plus room for the envelope, so an
/// oversized payload gets the domain's clear 413 rather than a cut-off body.
const SINGLE_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Largest request body for a batch.
const BATCH_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The HTTP routes.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/tasks", post(tasks::submit).get(tasks::list))
        .route(
            "/api/v1/tasks/batch",
            post(tasks::submit_batch).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
        )
        .route("/api/v1/tasks/{task_id}", get(tasks::get))
        .route("/api/v1/task-types", get(task_types::list))
        .route("/api/v1/jobs", post(jobs::create))
        .route("/api/v1/jobs/{job_id}", get(jobs::get))
        .route("/api/v1/tasks/{task_id}/cancel", post(tasks::cancel))
        .route("/api/v1/admin/queue/stats", get(admin::queue_stats))
        .route("/api/v1/admin/queues", get(queues::list))
        .route("/api/v1/admin/queues/{name}/pause", post(queues::pause))
        .route("/api/v1/admin/queues/{name}/resume", post(queues::resume))
        .route("/api/v1/admin/dead-letters", get(admin::dead_letters))
        .route("/api/v1/admin/dead-letters/requeue", post(admin::requeue))
        .route("/api/v1/admin/dead-letters/purge", post(admin::purge))
        .route("/api/v1/tasks/{task_id}/attempts", get(providers::attempts))
        .route("/api/v1/usage", get(providers::usage))
        .route("/api/v1/budget", get(providers::budget))
        .route(
            "/api/v1/admin/budgets/{user_id}",
            put(providers::set_budget),
        )
        .route("/api/v1/admin/providers", get(providers::providers))
        .route(
            "/api/v1/admin/providers/{name}/reset",
            post(providers::reset_breaker),
        )
        .route("/api/v1/events", get(events::sse))
        .route("/api/v1/events/ticket", post(tickets::mint))
        .route("/ws", get(ws::ws))
        .route("/", get(page::index))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::scrape))
        // After every route: it applies to the routes present when it is called.
        .method_not_allowed_fallback(super::fallback::method_not_allowed)
        .route_layer(axum::middleware::from_fn(trace::server_span))
        .layer(DefaultBodyLimit::max(SINGLE_BODY_LIMIT))
        .with_state(state)
}

/// 200 when the database and the queue answer, 503 otherwise and from the start of the drain.
async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.readiness.check().await?;
    Ok((StatusCode::OK, "ready"))
}
