//! The OpenAPI 3.1 document of every HTTP route, assembled from the `#[utoipa::path]`
//! annotations beside the handlers, served at `/openapi.json`; and `/docs`, a Swagger UI over
//! it whose JavaScript and CSS are compiled into the binary (no network at build or run time).
//!
//! What every operation shares is added here once rather than on each handler: the bearer
//! security requirement and its 401/403 answers (except on the public tags), the error shape
//! on 400, 404 (paths with parameters), 413 (bodies), 429 and 503.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Paths, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::domain::TaskType;

use super::{
    admin, audit, chat, dashboard, events, eventstore, jobs, json, metrics, page, pipelines,
    progress, projections, providers, queues, task_types, tasks, tickets, ws,
};

/// Operations with these tags need no token: pages, health and the document itself.
pub const PUBLIC_TAGS: [&str; 2] = ["pages", "health"];

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// `error` of [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code: `invalid_argument`, `unauthenticated`, `permission_denied`,
    /// `not_found`, `method_not_allowed`, `failed_precondition`, `version_conflict`,
    /// `payload_too_large`, `resource_exhausted`, `too_many_connections`, `unavailable`, …
    #[schema(example = "invalid_argument")]
    pub code: String,
    /// A sentence for people, naming what is wrong (PII and tokens masked).
    pub message: String,
    /// On `version_conflict` only: the stream's version now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

/// The document's root: every annotated handler and the shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "AI Integration Service",
        description = "Durable AI task queue and gateway. Every route below `/api/` needs \
                       `Authorization: Bearer <JWT>`; errors are `{\"error\": {\"code\", \"message\"}}`.",
    ),
    paths(
        tasks::submit, tasks::list, tasks::submit_batch, tasks::get, tasks::cancel,
        task_types::list, jobs::create, jobs::get,
        admin::queue_stats, admin::dead_letters, admin::requeue, admin::purge,
        audit::list, queues::list, queues::pause, queues::resume,
        dashboard::stream, dashboard::page, dashboard::script, dashboard::style,
        providers::attempts, providers::usage, providers::budget, providers::set_budget,
        providers::providers, providers::reset_breaker, providers::disable, providers::enable,
        eventstore::append, eventstore::read_stream, eventstore::read_all,
        eventstore::read_by_type, eventstore::subscribe,
        progress::me, progress::my_daily, progress::my_tasks, progress::of_user,
        progress::daily_of_user,
        projections::list, projections::rebuild, projections::resume,
        chat::start, chat::list, chat::get, chat::close, chat::send,
        pipelines::definitions, pipelines::create, pipelines::list, pipelines::get,
        pipelines::add_items, pipelines::cancel, pipelines::events,
        events::sse, tickets::mint, ws::ws,
        page::index, super::healthz, super::ready, metrics::scrape,
        openapi_json, docs_page, docs_script, docs_style, docs_init,
    ),
    components(schemas(ErrorBody, ErrorDetail, json::TaskBody, json::SubmitRequest, jobs::JobRequest)),
    modifiers(&Shared),
    tags(
        (name = "tasks", description = "Submit, read, list and cancel tasks"),
        (name = "jobs", description = "Seed 003's job API over the same tasks"),
        (name = "admin", description = "Admin-only operations"),
        (name = "providers", description = "Usage, budgets and provider attempts"),
        (name = "eventstore", description = "The event store (admins and service accounts)"),
        (name = "progress", description = "Progress read models"),
        (name = "chat", description = "Chat sessions about an item"),
        (name = "pipelines", description = "Multi-stage pipelines"),
        (name = "events", description = "Live task events (SSE, WebSocket)"),
        (name = "pages", description = "Browser pages and this document (no token)"),
        (name = "health", description = "Liveness, readiness and metrics (no token)"),
    ),
)]
pub struct ApiDoc;

/// The additions every operation shares (see the module doc).
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 with JWT_SECRET, or RS/PS/ES keys from JWT_JWKS_URL / \
                         JWT_JWKS_FILE; claims sub, role (user | admin | service), exp, tier",
                    ))
                    .build(),
            ),
        );
        task_type_enums(components, &mut doc.paths);
        for (path, item) in doc.paths.paths.iter_mut() {
            let has_params = path.contains('{');
            let ops = [
                ("get", item.get.as_mut()),
                ("post", item.post.as_mut()),
                ("put", item.put.as_mut()),
                ("delete", item.delete.as_mut()),
                ("patch", item.patch.as_mut()),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                // Handlers of different files share names (`list`, `get`): the method and
                // path make the id unique, as OpenAPI wants.
                op.operation_id = Some(operation_id(method, path));
                shared_answers(op, has_params);
            }
        }
    }
}

/// The task types a submit accepts, as an enum on the request bodies' `type` (the list is the
/// domain's, so a new type shows up here by itself).
fn task_type_enums(components: &mut utoipa::openapi::Components, paths: &mut Paths) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    let types: Vec<serde_json::Value> = TaskType::ALL
        .iter()
        .map(|t| serde_json::Value::from(t.as_str()))
        .collect();
    set_query_enums(paths, &types);
    for name in ["SubmitRequest", "JobRequest"] {
        if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut(name)
            && let Some(RefOr::T(Schema::Object(field))) = body.properties.get_mut("type")
        {
            field.enum_values = Some(types.clone());
        }
    }
}

/// The `type` filters of the list routes: a task type, or empty for any.
fn set_query_enums(paths: &mut Paths, types: &[serde_json::Value]) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::Schema;
    let mut any_or_type = vec![serde_json::Value::from("")];
    any_or_type.extend_from_slice(types);
    for item in paths.paths.values_mut() {
        let Some(op) = item.get.as_mut() else {
            continue;
        };
        for p in op.parameters.iter_mut().flatten() {
            if p.name == "type"
                && p.parameter_in == ParameterIn::Query
                && let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut()
            {
                o.enum_values = Some(any_or_type.clone());
            }
        }
    }
}

/// `get /api/v1/tasks/{task_id}` → `get_api_v1_tasks_task_id`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !part.is_empty() {
            id.push('_');
            id.push_str(part);
        }
    }
    id
}

/// Adds the shared security requirement and error answers to `op` (those it does not name).
fn shared_answers(op: &mut Operation, has_params: bool) {
    let public = op
        .tags
        .iter()
        .flatten()
        .any(|t| PUBLIC_TAGS.contains(&t.as_str()));
    if public {
        return;
    }
    if op.security.is_none() {
        op.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
    let mut add = |status: &str, why: &str| {
        if !op.responses.responses.contains_key(status) {
            op.responses
                .responses
                .insert(status.to_owned(), error_response(why).into());
        }
    };
    add("400", "Bad input: the message names the parameter or field");
    add("401", "Missing, expired or invalid token");
    add("403", "The token's role may not do this");
    if has_params {
        add("404", "No such resource, or not the caller's");
    }
    if op.request_body.is_some() {
        add("413", "Request body too large");
    }
    add(
        "429",
        "Rate or quota exceeded (Retry-After says when to try again)",
    );
    add(
        "503",
        "The database or queue is unavailable, or the instance is draining",
    );
}

/// An answer with the error shape.
fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// The document, built once.
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as JSON, rendered once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // Our own plain data with string keys: serializing cannot fail.
        serde_json::to_string(document()).unwrap_or_default()
    })
}

/// The UI's files, compiled into the binary (Swagger UI 5, Apache-2.0; see `docs/LICENSE`).
const UI_PAGE: &str = include_str!("docs/index.html");
const UI_INIT: &str = include_str!("docs/init.js");
const UI_SCRIPT: &str = include_str!("docs/swagger-ui-bundle.js");
const UI_STYLE: &str = include_str!("docs/swagger-ui.css");

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "pages",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

/// `GET /docs`.
#[utoipa::path(get, path = "/docs", tag = "pages",
    responses((status = 200, description = "Swagger UI over /openapi.json", content_type = "text/html", body = String)))]
pub async fn docs_page() -> Html<&'static str> {
    Html(UI_PAGE)
}

/// `GET /docs/swagger-ui-bundle.js`.
#[utoipa::path(get, path = "/docs/swagger-ui-bundle.js", tag = "pages",
    responses((status = 200, description = "Swagger UI's script", content_type = "text/javascript", body = String)))]
pub async fn docs_script() -> impl IntoResponse {
    script(UI_SCRIPT)
}

/// `GET /docs/init.js`.
#[utoipa::path(get, path = "/docs/init.js", tag = "pages",
    responses((status = 200, description = "Starts Swagger UI on /openapi.json", content_type = "text/javascript", body = String)))]
pub async fn docs_init() -> impl IntoResponse {
    script(UI_INIT)
}

/// `GET /docs/swagger-ui.css`.
#[utoipa::path(get, path = "/docs/swagger-ui.css", tag = "pages",
    responses((status = 200, description = "Swagger UI's styles", content_type = "text/css", body = String)))]
pub async fn docs_style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        UI_STYLE,
    )
}

fn script(body: &'static str) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        body,
    )
}
