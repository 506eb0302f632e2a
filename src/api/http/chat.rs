//! `/api/v1/chat/sessions`: deep-dive chat sessions. Sending a message answers with an SSE
//! stream of deltas when the client accepts `text/event-stream`, else with JSON once the
//! answer is complete.

use std::convert::Infallible;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::Body;
use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::domain::chat::Turn;
use crate::service::chat::{ChatEvent, ChatReply};
use crate::service::{ChatError, ServiceError};

/// `POST /api/v1/chat/sessions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// What the session is about: 1 to 100 characters once trimmed, no control characters.
    #[schema(
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,98}[^\s\x00-\x1f\x7f-\x9f])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    item_id: String,
    /// What the model is told about the item (at most 16 KiB of JSON).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Value,
}

/// `POST /api/v1/chat/sessions/{id}/messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// The question: up to 8,000 characters, not only spaces.
    #[schema(max_length = 8000, pattern = r"\S")]
    content: String,
    /// Sending the same key again replays the stored answer: up to 100 printable characters
    /// (blank: none).
    #[serde(default)]
    #[schema(
        pattern = r"(^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$)|(^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,98}[^\s\x00-\x1f\x7f-\x9f])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$)"
    )]
    idempotency_key: Option<String>,
}

/// `?page_size=&page_token=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Sessions per page (0: the default).
    #[serde(default)]
    #[param(maximum = 200)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
}

/// `?after_seq=&page_size=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// Messages after this sequence number.
    #[serde(default)]
    #[param(value_type = i64, minimum = 0, maximum = 4294967295i64)]
    after_seq: u32,
    /// Messages per page (0: the default).
    #[serde(default)]
    #[param(maximum = 500)]
    page_size: u32,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|r| ServiceError::Invalid(r.body_text()).into())
}

/// `POST /api/v1/chat/sessions`: 201 and the new session, or 200 and the active one about the
/// same item.
#[utoipa::path(post, path = "/api/v1/chat/sessions", tag = "chat", request_body = StartRequest,
    responses((status = 201, description = "A new session", body = Object),
        (status = 200, description = "The active session about the same item", body = Object)))]
pub async fn start(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Body(req): Body<StartRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (session, created) = state
        .chat
        .start_session(&caller.user_id, &req.item_id, req.context)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(session))))
}

/// `GET /api/v1/chat/sessions`: `{"sessions", "next_page_token"}`, newest first.
#[utoipa::path(get, path = "/api/v1/chat/sessions", tag = "chat", params(ListQuery),
    responses((status = 200, description = "`{\"sessions\", \"next_page_token\"}`, newest first", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let page = state
        .chat
        .list_sessions(&caller.user_id, q.page_size, &q.page_token)
        .await?;
    Ok(Json(json!({
        "sessions": page.items,
        "next_page_token": page.next_page_token,
    })))
}

/// `GET /api/v1/chat/sessions/{id}`: the session with its `messages` (a page: `after_seq`,
/// `page_size`).
#[utoipa::path(get, path = "/api/v1/chat/sessions/{session_id}", tag = "chat", params(("session_id" = uuid::Uuid, Path, description = "A chat session id"), MessagesQuery),
    responses((status = 200, description = "The session with a page of its `messages`", body = Object)))]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    q: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let (session, messages) = state
        .chat
        .session_with_messages(&caller.user_id, &id, q.after_seq, q.page_size)
        .await?;
    let mut body = json!(session);
    body["messages"] = json!(messages);
    Ok(Json(body))
}

/// `DELETE /api/v1/chat/sessions/{id}`: closes it; 200 and the closed session.
#[utoipa::path(delete, path = "/api/v1/chat/sessions/{session_id}", tag = "chat", params(("session_id" = uuid::Uuid, Path, description = "A chat session id")),
    responses((status = 200, description = "The closed session", body = Object)))]
pub async fn close(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let session = state.chat.close_session(&caller.user_id, &id).await?;
    Ok(Json(json!(session)))
}

/// `POST /api/v1/chat/sessions/{id}/messages`: SSE (`delta` events, then `message`, or
/// `error`) when the client accepts `text/event-stream`, else 200 and
/// `{"question", "message", "replayed"}` once the answer is stored.
#[utoipa::path(post, path = "/api/v1/chat/sessions/{session_id}/messages", tag = "chat", params(("session_id" = uuid::Uuid, Path, description = "A chat session id")),
    request_body = MessageRequest,
    responses((status = 200, description = "`{\"question\", \"message\", \"replayed\"}` once stored; with `Accept: text/event-stream`, SSE `delta` events then `message` or `error`", body = Object),
        (status = 409, description = "`session_not_active`, `max_messages_reached` or `turn_in_progress`", body = super::openapi::ErrorBody),
        (status = 502, description = "No provider could answer (`provider_unavailable`)", body = super::openapi::ErrorBody),
        (status = 504, description = "The answer took too long", body = super::openapi::ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(req): Body<MessageRequest>,
) -> Result<Response, ApiError> {
    let reply = state
        .chat
        .send_message(
            &caller.user_id,
            &id,
            &req.content,
            req.idempotency_key.as_deref(),
        )
        .await?;
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_sse {
        return Ok(Sse::new(sse_events(reply))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let replayed = reply.replayed;
    let mut events = reply.events;
    while let Some(event) = events.recv().await {
        match event {
            ChatEvent::Delta(_) => {}
            ChatEvent::Answered(turn) => return Ok(Json(answered(&turn, replayed)).into_response()),
            ChatEvent::Failed(e) => return Err(e.into()),
        }
    }
    Err(ChatError::Internal.into())
}

/// The body of a stored answer.
fn answered(turn: &Turn, replayed: bool) -> Value {
    json!({
        "question": turn.question,
        "message": turn.answer,
        "replayed": replayed,
    })
}

/// The reply as SSE: `delta` `{"text"}`, then `message` (as the JSON answer) or `error`
/// `{"code", "message"}`.
fn sse_events(reply: ChatReply) -> impl Stream<Item = Result<Event, Infallible>> {
    let replayed = reply.replayed;
    futures::stream::unfold(Some(reply.events), move |rx| async move {
        let mut rx = rx?;
        let event = rx.recv().await?;
        Some(match event {
            ChatEvent::Delta(text) => (
                Ok(Event::default()
                    .event("delta")
                    .data(json!({ "text": text }).to_string())),
                Some(rx),
            ),
            ChatEvent::Answered(turn) => (
                Ok(Event::default()
                    .event("message")
                    .data(answered(&turn, replayed).to_string())),
                None,
            ),
            ChatEvent::Failed(e) => (
                Ok(Event::default()
                    .event("error")
                    .data(ApiError::from(e).body().to_string())),
                None,
            ),
        })
    })
}
