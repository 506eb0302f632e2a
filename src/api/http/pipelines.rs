//! `/api/v1/pipelines` and `/api/v1/pipeline-sessions`: pipeline definitions and sessions
//! (seed 004). Thin: parse, call [`PipelineService`](crate::service::PipelineService),
//! shape the answer.

use std::convert::Infallible;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::events::{EventsQuery, sse_event};
use super::json::Body;
use super::tickets::stream_caller;
use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::auth::AuthError;
use crate::domain::{PageRequest, TaskId};
use crate::service::ServiceError;
use crate::service::pipeline::SessionView;
use crate::store::Transport;
use crate::store::pipeline::{ItemRecord, SessionRecord};

/// Items per page of `GET /api/v1/pipeline-sessions/{id}` unless `page_size` says.
const DEFAULT_ITEMS_PAGE: u32 = 100;

/// `{"items": [...]}`: the body of a create and of an add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsRequest {
    /// The items, each the input of the pipeline's first stages.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
}

/// `?page_size&page_token`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Per page (absent or 0: the default).
    #[param(maximum = 1000)]
    page_size: Option<u32>,
    page_token: Option<String>,
}

fn session_id(p: Result<Path<String>, PathRejection>) -> Result<TaskId, ApiError> {
    let Path(raw) = p.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    TaskId::parse(&raw).map_err(|_| {
        ServiceError::Invalid(format!("{raw:?} is not a pipeline session id (a UUID)")).into()
    })
}

fn page(q: Result<Query<PageQuery>, QueryRejection>) -> Result<PageQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|r| ServiceError::Invalid(r.body_text()).into())
}

/// A session without its items.
pub fn session_json(s: &SessionRecord) -> Value {
    json!({
        "session_id": s.id,
        "pipeline": s.definition.name,
        "status": s.status,
        "item_count": s.item_count,
        "error": s.error,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "finished_at": s.finished_at,
    })
}

/// An item: `{"id", "position", "status", "data", "stages": {"<stage>": {"status", "result",
/// "error", "task_id"}}}`.
pub fn item_json(i: &ItemRecord) -> Value {
    let stages: Map<String, Value> = i
        .stages
        .iter()
        .map(|s| {
            (
                s.stage.clone(),
                json!({
                    "status": s.status,
                    "result": s.result,
                    "error": s.error,
                    "task_id": s.task_id,
                }),
            )
        })
        .collect();
    json!({
        "id": i.id,
        "position": i.position,
        "status": i.status,
        "data": i.data,
        "stages": stages,
    })
}

/// `GET /api/v1/pipelines`: `{"pipelines": [definition]}`.
#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines",
    responses((status = 200, description = "`{\"pipelines\": [definition]}`", body = Object)))]
pub async fn definitions(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
) -> Json<Value> {
    Json(json!({ "pipelines": state.pipelines.definitions() }))
}

/// `POST /api/v1/pipelines/{name}/sessions` with `{"items": [...]}`: 201 and the session.
#[utoipa::path(post, path = "/api/v1/pipelines/{name}/sessions", tag = "pipelines",
    params(("name" = String, Path, description = "A pipeline's name")), request_body = ItemsRequest,
    responses((status = 201, description = "The session", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    name: Result<Path<String>, PathRejection>,
    Body(req): Body<ItemsRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Path(name) = name.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let session = state.pipelines.create(&caller, &name, req.items).await?;
    Ok((StatusCode::CREATED, Json(session_json(&session))))
}

/// `POST /api/v1/pipeline-sessions/{id}/items` with `{"items": [...]}`.
#[utoipa::path(post, path = "/api/v1/pipeline-sessions/{id}/items", tag = "pipelines", params(("id" = uuid::Uuid, Path, description = "A pipeline session id")),
    request_body = ItemsRequest,
    responses((status = 200, description = "`{\"session_id\", \"item_count\"}`", body = Object),
        (status = 409, description = "The session has finished", body = super::openapi::ErrorBody)))]
pub async fn add_items(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: Result<Path<String>, PathRejection>,
    Body(req): Body<ItemsRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(id)?;
    let count = state.pipelines.add_items(&caller, id, req.items).await?;
    Ok(Json(json!({ "session_id": id, "item_count": count })))
}

/// `GET /api/v1/pipeline-sessions/{id}?page_size&page_token`: the session with a page of
/// items, each with every stage's status, result and error.
#[utoipa::path(get, path = "/api/v1/pipeline-sessions/{id}", tag = "pipelines", params(("id" = uuid::Uuid, Path, description = "A pipeline session id"), PageQuery),
    responses((status = 200, description = "The session with a page of items and their stages", body = Object)))]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(id)?;
    let q = page(q)?;
    let after = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(t.parse::<u64>().map_err(|_| {
            ServiceError::Invalid("page_token is not one this server issued".into())
        })?),
    };
    // 0 means the default, as on every other page.
    let limit = q
        .page_size
        .filter(|&n| n != 0)
        .unwrap_or(DEFAULT_ITEMS_PAGE);
    let SessionView {
        session,
        items,
        next_after,
    } = state.pipelines.get(&caller, id, after, limit).await?;
    let mut body = session_json(&session);
    body["items"] = items.iter().map(item_json).collect();
    body["next_page_token"] = json!(next_after.map(|p| p.to_string()));
    Ok(Json(body))
}

/// `GET /api/v1/pipeline-sessions?page_size&page_token`: the caller's sessions, newest first.
#[utoipa::path(get, path = "/api/v1/pipeline-sessions", tag = "pipelines", params(PageQuery),
    responses((status = 200, description = "`{\"sessions\", \"next_page_token\"}`, newest first", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = page(q)?;
    let req = PageRequest::parse(
        q.page_size.unwrap_or(0),
        q.page_token.as_deref().unwrap_or(""),
    )?;
    let page = state.pipelines.list(&caller, req).await?;
    let sessions: Vec<Value> = page.items.iter().map(session_json).collect();
    Ok(Json(
        json!({ "sessions": sessions, "next_page_token": page.next_page_token }),
    ))
}

/// `POST /api/v1/pipeline-sessions/{id}/cancel`.
#[utoipa::path(post, path = "/api/v1/pipeline-sessions/{id}/cancel", tag = "pipelines", params(("id" = uuid::Uuid, Path, description = "A pipeline session id")),
    responses((status = 200, description = "The session", body = Object),
        (status = 409, description = "The session has finished", body = super::openapi::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(id)?;
    let session = state.pipelines.cancel(&caller, id).await?;
    Ok(Json(session_json(&session)))
}

/// `GET /api/v1/pipeline-sessions/{id}/events`: the session's events as Server-Sent Events,
/// from its first (or after `Last-Event-ID` / `since`), then live. Authentication as for
/// `/api/v1/events` (bearer, or a one-time `ticket` for EventSource).
#[utoipa::path(get, path = "/api/v1/pipeline-sessions/{id}/events", tag = "pipelines", params(("id" = uuid::Uuid, Path, description = "A pipeline session id"), super::events::EventsQuery),
    responses((status = 200, description = "Server-Sent Events of the session", content_type = "text/event-stream", body = String)))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = session_id(id)?;
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("invalid"));
    let since = q.request(last_event_id, Transport::Sse, 0)?.since;
    let (caller, exp) = stream_caller(&state, &headers, &q)
        .await?
        .ok_or(AuthError::Missing)?;
    let stream = state
        .pipelines
        .events(&caller, id, since, Transport::Sse, Some(exp))
        .await?;
    let body = futures::stream::unfold(stream, move |mut s| async move {
        let item = s.next().await?;
        Some((Ok::<_, Infallible>(sse_event(item, true)), s))
    });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(state.notifications.keepalive()))
        .into_response())
}
