//! `/api/v1/admin/projections`: each projection's position, lag and state; rebuild and
//! resume. Admin-only.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::service::{ProjectionView, ServiceError};

/// A projection as JSON.
pub fn view_json(v: &ProjectionView) -> Value {
    let s = &v.status;
    json!({
        "name": s.name,
        "state": v.state,
        "active_generation": s.active_generation,
        "position": s.position,
        "head": v.lag.head,
        "events_behind": v.lag.events_behind,
        "oldest_unprocessed_age_seconds": v.lag.oldest_unprocessed_age.as_secs_f64(),
        "last_heartbeat": s.heartbeat_at,
        "heartbeat_age_seconds": v.lag.heartbeat_age.map(|a| a.as_secs_f64()),
        "owner": s.owner,
        "lease_until": s.lease_until,
        "rebuild": s.rebuild.map(|(generation, position)| json!({
            "generation": generation,
            "position": position,
        })),
        "parked": s.parked,
    })
}

fn name(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(n)| n)
        .map_err(|r| ServiceError::Invalid(r.body_text()).into())
}

/// `GET /api/v1/admin/projections` → `{"projections": [...]}`.
#[utoipa::path(get, path = "/api/v1/admin/projections", tag = "admin",
    responses((status = 200, description = "`{\"projections\": [...]}`", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let views = state.projections.list(&caller).await?;
    let list: Vec<Value> = views.iter().map(view_json).collect();
    Ok(Json(json!({ "projections": list })))
}

/// `POST /api/v1/admin/projections/{name}/rebuild` → 202 and the projection: rebuilt from
/// position 0 beside the live model, which readers keep seeing until the rebuild catches up.
#[utoipa::path(post, path = "/api/v1/admin/projections/{name}/rebuild", tag = "admin", params(("name" = String, Path, pattern = "^(progress|task_stats)$", description = "A projection")),
    responses((status = 202, description = "Rebuilding beside the live model", body = Object),
        (status = 409, description = "A rebuild is already running", body = super::openapi::ErrorBody)))]
pub async fn rebuild(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    n: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let view = state.projections.rebuild(&caller, &name(n)?).await?;
    Ok((StatusCode::ACCEPTED, Json(view_json(&view))))
}

/// `POST /api/v1/admin/projections/{name}/resume` → the projection: a parked one tries the
/// event it stopped on again.
#[utoipa::path(post, path = "/api/v1/admin/projections/{name}/resume", tag = "admin", params(("name" = String, Path, pattern = "^(progress|task_stats)$", description = "A projection")),
    responses((status = 200, description = "The projection", body = Object)))]
pub async fn resume(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    n: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let view = state.projections.resume(&caller, &name(n)?).await?;
    Ok(Json(view_json(&view)))
}
