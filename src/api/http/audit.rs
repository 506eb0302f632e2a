//! `GET /api/v1/admin/audit`: the audit log, for admins.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

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
    /// Only this admin's actions (empty: anyone's).
    #[serde(default)]
    #[param(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    actor: String,
    /// Only this action (empty: any).
    #[serde(default)]
    #[param(
        pattern = "^(|requeue_dead_letters|purge_dead_letters|pause_queue|resume_queue|set_budget|reset_breaker|disable_provider|enable_provider|rebuild_projection|resume_projection)$"
    )]
    action: String,
    /// RFC 3339: entries at or after it.
    #[serde(default)]
    #[param(schema_with = time_or_empty)]
    from: String,
    /// RFC 3339: entries before it.
    #[serde(default)]
    #[param(schema_with = time_or_empty)]
    to: String,
    #[serde(default)]
    cursor: String,
    /// Entries per page (0: the default).
    #[serde(default)]
    #[param(maximum = 500)]
    limit: u32,
}

/// `from` and `to` in the document: an RFC 3339 time, or empty for no bound.
fn time_or_empty() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::Type;
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(0)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .build(),
    )
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
