//! `POST /api/v1/events/ticket`: a one-time ticket that opens one event stream (SSE or
//! WebSocket) with `?ticket=`, so a browser need not put its JWT in the stream's URL.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::events::{EventsQuery, bearer};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::auth::{AuthError, Caller};

/// `POST /api/v1/events/ticket` with `Authorization: Bearer`: 201 and
/// `{"ticket", "expires_in"}` (seconds).
#[utoipa::path(post, path = "/api/v1/events/ticket", tag = "events",
    responses((status = 201, description = "`{\"ticket\", \"expires_in\"}` (seconds)", body = Object)))]
pub async fn mint(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = bearer(&headers).ok_or(AuthError::Missing)?;
    let (caller, exp) = state.keys.verify_with_expiry(token)?;
    let ticket = state.tickets.issue(&caller, exp).await?;
    let body = json!({
        "ticket": ticket.expose(),
        "expires_in": ticket.expires_in.as_secs(),
    });
    // A credential: no cache may keep it.
    let headers = [(header::CACHE_CONTROL, "no-store")];
    Ok((StatusCode::CREATED, headers, Json(body)).into_response())
}

/// The caller of a stream request and when their token expires (unix seconds), from, in this
/// order: `Authorization: Bearer`, a `ticket` (used up here), the `access_token` parameter.
/// `None` when the request carries none of them; an error when the one it carries is bad.
pub async fn stream_caller(
    state: &AppState,
    headers: &HeaderMap,
    query: &EventsQuery,
) -> Result<Option<(Caller, u64)>, ApiError> {
    if let Some(token) = bearer(headers) {
        return Ok(Some(state.keys.verify_with_expiry(token)?));
    }
    if let Some(ticket) = query.ticket.as_deref() {
        let redeemed = state
            .tickets
            .redeem(ticket)
            .await?
            .ok_or(AuthError::BadTicket)?;
        return Ok(Some((redeemed.caller, redeemed.token_expires_at)));
    }
    match query.access_token.as_deref() {
        Some(token) => Ok(Some(state.keys.verify_with_expiry(token)?)),
        None => Ok(None),
    }
}
