//! `/api/v1/progress/*`: the Progress read models. Users read their own (`me`); admins and
//! service accounts anyone's (`users/{user_id}`).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::auth::Caller;
use crate::domain::UserId;
use crate::domain::progress::UserProgress;
use crate::service::ServiceError;

/// `?from=YYYY-MM-DD&to=YYYY-MM-DD` (both included; default: the last 30 days).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

fn range(q: Result<Query<RangeQuery>, QueryRejection>) -> Result<RangeQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|r| ServiceError::Invalid(r.body_text()).into())
}

fn user(p: Result<Path<String>, PathRejection>) -> Result<UserId, ApiError> {
    let Path(raw) = p.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    Ok(UserId::parse(&raw)?)
}

/// `GET /api/v1/progress/me`: the caller's UserProgress.
#[utoipa::path(get, path = "/api/v1/progress/me", tag = "progress",
    responses((status = 200, description = "The caller's UserProgress", body = Object)))]
pub async fn me(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<UserProgress>, ApiError> {
    let user = caller.user_id.clone();
    Ok(Json(state.progress.user_progress(&caller, &user).await?))
}

/// `GET /api/v1/progress/users/{user_id}`: anyone's (admins and service accounts).
#[utoipa::path(get, path = "/api/v1/progress/users/{user_id}", tag = "progress", params(("user_id" = String, Path, max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "The user")),
    responses((status = 200, description = "The user's UserProgress", body = Object)))]
pub async fn of_user(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<UserProgress>, ApiError> {
    let user = user(id)?;
    Ok(Json(state.progress.user_progress(&caller, &user).await?))
}

async fn daily_of(
    state: &AppState,
    caller: &Caller,
    user: &UserId,
    q: RangeQuery,
) -> Result<Json<Value>, ApiError> {
    let days = state
        .progress
        .daily_stats(caller, user, q.from, q.to)
        .await?;
    Ok(Json(json!({ "user_id": user, "days": days })))
}

/// `GET /api/v1/progress/me/daily?from=&to=` → `{"user_id", "days": [DailyStats]}`: the days
/// with activity, in the caller's time zone.
#[utoipa::path(get, path = "/api/v1/progress/me/daily", tag = "progress", params(RangeQuery),
    responses((status = 200, description = "`{\"user_id\", \"days\"}`", body = Object)))]
pub async fn my_daily(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    q: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let user = caller.user_id.clone();
    daily_of(&state, &caller, &user, range(q)?).await
}

/// `GET /api/v1/progress/users/{user_id}/daily?from=&to=`.
#[utoipa::path(get, path = "/api/v1/progress/users/{user_id}/daily", tag = "progress", params(("user_id" = String, Path, max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "The user"), RangeQuery),
    responses((status = 200, description = "`{\"user_id\", \"days\"}`", body = Object)))]
pub async fn daily_of_user(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let user = user(id)?;
    daily_of(&state, &caller, &user, range(q)?).await
}

/// `GET /api/v1/progress/me/tasks?from=&to=` → `{"user_id", "days": [{"date", "task_type",
/// "outcome", "tasks", "attempts", "input_tokens", "output_tokens", "cost_micros"}]}`: the
/// caller's finished tasks per UTC day, type and outcome.
#[utoipa::path(get, path = "/api/v1/progress/me/tasks", tag = "progress", params(RangeQuery),
    responses((status = 200, description = "`{\"user_id\", \"days\"}`: finished tasks per day, type and outcome", body = Object)))]
pub async fn my_tasks(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    q: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = range(q)?;
    let user = caller.user_id.clone();
    let rows = state
        .progress
        .task_stats(&caller, &user, q.from, q.to)
        .await?;
    let days: Vec<Value> = rows
        .into_iter()
        .map(|(k, r)| {
            json!({
                "date": k.day,
                "task_type": k.task_type,
                "outcome": k.outcome,
                "tasks": r.tasks,
                "attempts": r.attempts,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "cost_micros": r.cost_micros,
            })
        })
        .collect();
    Ok(Json(json!({ "user_id": user, "days": days })))
}
