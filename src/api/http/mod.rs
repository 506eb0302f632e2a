//! HTTP/JSON routes.

mod admin;
mod audit;
mod chat;
mod dashboard;
pub mod events;
mod eventstore;
mod jobs;
pub(crate) mod json;
mod json_depth;
mod metrics;
mod openapi;

pub use metrics::{standalone as metrics_only, track as track_metrics};
mod page;
mod pipelines;
mod progress;
mod projections;
mod providers;
mod queues;
mod task_types;
mod tasks;
mod tickets;
mod trace;
mod ws;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Extension, Router};

use super::AppState;
use super::error::ApiError;
use super::limits::BodyLimit;

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
            post(tasks::submit_batch).layer((
                DefaultBodyLimit::max(BATCH_BODY_LIMIT),
                Extension(BodyLimit(BATCH_BODY_LIMIT)),
            )),
        )
        .route("/api/v1/tasks/{task_id}", get(tasks::get))
        .route("/api/v1/task-types", get(task_types::list))
        .route("/api/v1/jobs", post(jobs::create))
        .route("/api/v1/jobs/{job_id}", get(jobs::get))
        .route("/api/v1/tasks/{task_id}/cancel", post(tasks::cancel))
        .route("/api/v1/admin/queue/stats", get(admin::queue_stats))
        .route("/api/v1/admin/audit", get(audit::list))
        .route("/api/v1/admin/queues", get(queues::list))
        .route("/api/v1/admin/queues/{name}/pause", post(queues::pause))
        .route("/api/v1/admin/queues/{name}/resume", post(queues::resume))
        .route("/api/v1/admin/dead-letters", get(admin::dead_letters))
        .route("/api/v1/admin/dashboard/stream", get(dashboard::stream))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/dashboard.js", get(dashboard::script))
        .route("/dashboard/dashboard.css", get(dashboard::style))
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
        .route(
            "/api/v1/admin/providers/{name}/disable",
            post(providers::disable),
        )
        .route(
            "/api/v1/admin/providers/{name}/enable",
            post(providers::enable),
        )
        .route(
            "/api/v1/eventstore/streams/{stream_id}",
            post(eventstore::append).get(eventstore::read_stream),
        )
        .route("/api/v1/eventstore/all", get(eventstore::read_all))
        .route(
            "/api/v1/eventstore/types/{event_type}",
            get(eventstore::read_by_type),
        )
        .route("/api/v1/eventstore/subscribe", get(eventstore::subscribe))
        .route("/api/v1/progress/me", get(progress::me))
        .route("/api/v1/progress/me/daily", get(progress::my_daily))
        .route("/api/v1/progress/me/tasks", get(progress::my_tasks))
        .route("/api/v1/progress/users/{user_id}", get(progress::of_user))
        .route(
            "/api/v1/progress/users/{user_id}/daily",
            get(progress::daily_of_user),
        )
        .route("/api/v1/admin/projections", get(projections::list))
        .route(
            "/api/v1/admin/projections/{name}/rebuild",
            post(projections::rebuild),
        )
        .route(
            "/api/v1/admin/projections/{name}/resume",
            post(projections::resume),
        )
        .route("/api/v1/chat/sessions", post(chat::start).get(chat::list))
        .route(
            "/api/v1/chat/sessions/{session_id}",
            get(chat::get).merge(delete(chat::close)),
        )
        .route(
            "/api/v1/chat/sessions/{session_id}/messages",
            post(chat::send),
        )
        .route("/api/v1/pipelines", get(pipelines::definitions))
        .route("/api/v1/pipelines/{name}/sessions", post(pipelines::create))
        .route("/api/v1/pipeline-sessions", get(pipelines::list))
        .route("/api/v1/pipeline-sessions/{id}", get(pipelines::get))
        .route(
            "/api/v1/pipeline-sessions/{id}/items",
            post(pipelines::add_items),
        )
        .route(
            "/api/v1/pipeline-sessions/{id}/cancel",
            post(pipelines::cancel),
        )
        .route(
            "/api/v1/pipeline-sessions/{id}/events",
            get(pipelines::events),
        )
        .route("/api/v1/events", get(events::sse))
        .route("/api/v1/events/ticket", post(tickets::mint))
        .route("/ws", get(ws::ws))
        .route("/", get(page::index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::scrape))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs_page))
        .route("/docs/swagger-ui-bundle.js", get(openapi::docs_script))
        .route("/docs/swagger-ui.css", get(openapi::docs_style))
        .route("/docs/init.js", get(openapi::docs_init))
        // After every route: it applies to the routes present when it is called.
        .method_not_allowed_fallback(super::fallback::method_not_allowed)
        .route_layer(axum::middleware::from_fn(trace::server_span))
        .layer(DefaultBodyLimit::max(SINGLE_BODY_LIMIT))
        .layer(Extension(BodyLimit(SINGLE_BODY_LIMIT)))
        .with_state(state)
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// 200 when the database and the queue answer, 503 otherwise and from the start of the drain.
/// The body is `ready`, followed by the projections that lag past `PROJECTION_LAG_THRESHOLD`
/// or are parked, one a line: stale read models are worth a look, not a reason to stop
/// sending this instance traffic.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready; lagging projections listed after the first line", content_type = "text/plain", body = String),
        (status = 503, description = "Not ready", body = openapi::ErrorBody)))]
async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.readiness.check().await?;
    let mut body = String::from("ready");
    let lagging = state.readiness.lagging_projections().await;
    if !lagging.is_empty() {
        body.push_str("\nlagging projections:");
        for v in lagging {
            body.push_str(&format!(
                "\n  {}: {} events behind, oldest waiting {:.1}s (threshold {}s)",
                v.status.name,
                v.lag.events_behind,
                v.lag.oldest_unprocessed_age.as_secs_f64(),
                state.projections.lag_threshold().as_secs_f64(),
            ));
            if let Some(p) = &v.status.parked {
                body.push_str(&format!(", parked at position {}: {}", p.position, p.error));
            }
        }
    }
    Ok((StatusCode::OK, body))
}
