//! `GET /api/v1/admin/audit`: the audit log, for admins.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::domain::audit::AuditEntry;
use crate::service::ServiceError;
use crate::service::audit::AuditQuery;

/// Filters and paging; every field optional.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    /// RFC 3339: entries at or after it.
    #[serde(default)]
    from: String,
    /// RFC 3339: entries before it.
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    limit: u32,
}

/// An entry as JSON.
pub fn entry_json(e: &AuditEntry) -> Value {
    json!({
        "id": e.id,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "result": e.result(),
        "error": e.error,
        "detail": e.detail,
        "request_id": e.request_id,
    })
}

/// `GET /api/v1/admin/audit?actor=&action=&from=&to=&limit=&cursor=` →
/// `{"entries": [...], "next_cursor": "…" | null}`, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", params(AuditParams),
    responses((status = 200, description = "`{\"entries\", \"next_cursor\"}`, newest first", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let query = AuditQuery {
        actor: &p.actor,
        action: &p.action,
        from: &p.from,
        to: &p.to,
        cursor: &p.cursor,
        limit: p.limit,
    };
    let page = state.audit.list(&caller, query).await?;
    let entries: Vec<Value> = page.entries.iter().map(entry_json).collect();
    Ok(Json(
        json!({ "entries": entries, "next_cursor": page.next_cursor }),
    ))
}
