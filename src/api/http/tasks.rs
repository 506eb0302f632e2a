//! `/api/v1/tasks` handlers.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::json::{
    BatchResponse, Body, ListQuery, ListResponse, SubmitBatchRequest, SubmitRequest, TaskBody,
};
use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::domain::{PageRequest, TaskId};
use crate::service::ServiceError;

type Accepted<T> = Result<(StatusCode, Json<T>), ApiError>;

/// `POST /api/v1/tasks`: 202 and the stored task.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = SubmitRequest,
    responses((status = 202, description = "Stored and queued", body = TaskBody)))]
pub async fn submit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Body(req): Body<SubmitRequest>,
) -> Accepted<TaskBody> {
    let new = req.into_new_task(&caller, state.tasks.policy())?;
    let mut tasks = state.tasks.submit(vec![new]).await?;
    let task = tasks.pop().ok_or(ServiceError::Internal)?;
    Ok((StatusCode::ACCEPTED, Json(task.into())))
}

/// `POST /api/v1/tasks/batch`: 202 and the stored tasks, in request order.
#[utoipa::path(post, path = "/api/v1/tasks/batch", tag = "tasks", request_body = SubmitBatchRequest,
    responses((status = 202, description = "All stored, in request order", body = BatchResponse)))]
pub async fn submit_batch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Body(req): Body<SubmitBatchRequest>,
) -> Accepted<BatchResponse> {
    let new = req.into_new_tasks(&caller, state.tasks.policy())?;
    let tasks = state.tasks.submit(new).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchResponse {
            tasks: tasks.into_iter().map(Into::into).collect(),
        }),
    ))
}

/// `GET /api/v1/tasks/{task_id}`.
#[utoipa::path(get, path = "/api/v1/tasks/{task_id}", tag = "tasks",
    params(("task_id" = uuid::Uuid, Path, description = "A task id (UUID)")),
    responses((status = 200, description = "The task", body = TaskBody)))]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TaskBody>, ApiError> {
    let id = task_id(path)?;
    Ok(Json(state.tasks.get(&caller, id).await?.into()))
}

/// `POST /api/v1/tasks/{task_id}/cancel`.
#[utoipa::path(post, path = "/api/v1/tasks/{task_id}/cancel", tag = "tasks",
    params(("task_id" = uuid::Uuid, Path, description = "A task id (UUID)")),
    responses((status = 200, description = "Cancelled", body = TaskBody),
        (status = 409, description = "Already finished", body = super::openapi::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TaskBody>, ApiError> {
    let id = task_id(path)?;
    Ok(Json(state.tasks.cancel(&caller, id).await?.into()))
}

/// `GET /api/v1/tasks?page_size&page_token&status&type`: the caller's tasks, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, description = "The caller's tasks, newest first", body = ListResponse)))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListResponse>, ApiError> {
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let page = PageRequest::parse(q.page_size, &q.page_token)?;
    let status = q.status.as_deref().map(str::parse).transpose()?;
    // Empty means no filter, as on the dead-letter list.
    let task_type = q
        .task_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(str::parse)
        .transpose()?;
    let page = state.tasks.list(&caller, status, task_type, page).await?;
    Ok(Json(ListResponse {
        tasks: page.items.into_iter().map(Into::into).collect(),
        next_page_token: page.next_page_token,
    }))
}

fn task_id(path: Result<Path<String>, PathRejection>) -> Result<TaskId, ApiError> {
    let Path(raw) = path.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    Ok(TaskId::parse(&raw)?)
}
