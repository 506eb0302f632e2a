//! The authorisation matrix (issue 25): one row per HTTP route, method and notable query,
//! each saying who may call it. For every row: no token gets 401 (but for the public pages),
//! bob gets 404 for alice's things, 403 for admin calls and for alice's data by user id, and
//! never sees alice's ids in what he may list; the owner (or an admin) is let through, so a
//! row that refuses everyone fails. A route in the router without a row fails the test, and
//! so does a row without a route. The gRPC half is in `authz_grpc.rs`; one test runs both
//! against one app in each mode.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::authz_grpc::Callers;
use crate::helpers::{Mode, TestApp, both_modes, router_routes, spawn_app};
use crate::pipelines::create;

/// Who may call a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token: health, readiness, metrics, the static pages.
    Public,
    /// Any user, on their own data (lists, submits, their streams).
    Own,
    /// Names alice's task, job, chat or pipeline session: another user gets 404.
    Owned,
    /// Names alice by her user id: another user gets 403.
    OtherUser,
    /// Admins only: users get 403.
    Admin,
    /// Admins and service accounts (the event store): users get 403.
    Backend,
}

use Access::*;

struct Row {
    method: &'static str,
    /// With placeholders: {task_id}, {job_id}, {chat}, {pipeline}, {queue}, {provider},
    /// {projection}.
    path: &'static str,
    access: Access,
    body: Option<&'static str>,
}

const fn row(method: &'static str, path: &'static str, access: Access) -> Row {
    Row {
        method,
        path,
        access,
        body: None,
    }
}

const fn with(method: &'static str, path: &'static str, access: Access, body: &'static str) -> Row {
    Row {
        method,
        path,
        access,
        body: Some(body),
    }
}

const ECHO: &str = r#"{"type": "echo", "payload": {"message": "m", "delay_ms": 0}}"#;
const JOB: &str = r#"{"type": "echo", "payload": {"message": "j"}}"#;

#[rustfmt::skip]
const ROWS: &[Row] = &[
    with("POST", "/api/v1/tasks", Own, ECHO),
    row("GET", "/api/v1/tasks", Own),
    with("POST", "/api/v1/tasks/batch", Own, r#"{"tasks": [{"type": "echo", "payload": {}}]}"#),
    row("GET", "/api/v1/tasks/{task_id}", Owned),
    row("GET", "/api/v1/task-types", Own),
    with("POST", "/api/v1/jobs", Own, JOB),
    row("GET", "/api/v1/jobs/{job_id}", Owned),
    row("POST", "/api/v1/tasks/{task_id}/cancel", Owned),
    row("GET", "/api/v1/admin/queue/stats", Admin),
    row("GET", "/api/v1/admin/audit", Admin),
    row("GET", "/api/v1/admin/queues", Admin),
    row("POST", "/api/v1/admin/queues/{queue}/pause", Admin),
    row("POST", "/api/v1/admin/queues/{queue}/resume", Admin),
    row("GET", "/api/v1/admin/dead-letters", Admin),
    row("GET", "/api/v1/admin/dashboard/stream", Admin),
    row("GET", "/dashboard", Public),
    row("GET", "/dashboard/dashboard.js", Public),
    row("GET", "/dashboard/dashboard.css", Public),
    with("POST", "/api/v1/admin/dead-letters/requeue", Admin, r#"{"all": true}"#),
    with("POST", "/api/v1/admin/dead-letters/purge", Admin, r#"{"all": true}"#),
    row("GET", "/api/v1/tasks/{task_id}/attempts", Owned),
    row("GET", "/api/v1/usage", Own),
    row("GET", "/api/v1/usage?user_id=alice", OtherUser),
    row("GET", "/api/v1/usage?all=true", Admin),
    row("GET", "/api/v1/budget", Own),
    row("GET", "/api/v1/budget?user_id=alice", OtherUser),
    with("PUT", "/api/v1/admin/budgets/alice", Admin, r#"{"monthly_usd": "5.00"}"#),
    row("GET", "/api/v1/admin/providers", Admin),
    row("POST", "/api/v1/admin/providers/{provider}/reset", Admin),
    row("POST", "/api/v1/admin/providers/{provider}/disable", Admin),
    row("POST", "/api/v1/admin/providers/{provider}/enable", Admin),
    with("POST", "/api/v1/eventstore/streams/matrix-1", Backend,
         r#"{"events": [{"type": "Tested", "data": {}}]}"#),
    row("GET", "/api/v1/eventstore/streams/matrix-1", Backend),
    row("GET", "/api/v1/eventstore/all", Backend),
    row("GET", "/api/v1/eventstore/types/Tested", Backend),
    row("GET", "/api/v1/eventstore/subscribe", Backend),
    row("GET", "/api/v1/progress/me", Own),
    row("GET", "/api/v1/progress/me/daily", Own),
    row("GET", "/api/v1/progress/me/tasks", Own),
    row("GET", "/api/v1/progress/users/alice", OtherUser),
    row("GET", "/api/v1/progress/users/alice/daily", OtherUser),
    row("GET", "/api/v1/admin/projections", Admin),
    row("POST", "/api/v1/admin/projections/{projection}/rebuild", Admin),
    row("POST", "/api/v1/admin/projections/{projection}/resume", Admin),
    with("POST", "/api/v1/chat/sessions", Own, r#"{"item_id": "matrix", "context": {}}"#),
    row("GET", "/api/v1/chat/sessions", Own),
    row("GET", "/api/v1/chat/sessions/{chat}", Owned),
    with("POST", "/api/v1/chat/sessions/{chat}/messages", Owned, r#"{"content": "hi"}"#),
    row("DELETE", "/api/v1/chat/sessions/{chat}", Owned),
    row("GET", "/api/v1/pipelines", Own),
    with("POST", "/api/v1/pipelines/menu/sessions", Own, r#"{"items": [{"id": "m", "name": "n"}]}"#),
    row("GET", "/api/v1/pipeline-sessions", Own),
    row("GET", "/api/v1/pipeline-sessions/{pipeline}", Owned),
    with("POST", "/api/v1/pipeline-sessions/{pipeline}/items", Owned,
         r#"{"items": [{"id": "m2", "name": "n"}]}"#),
    row("GET", "/api/v1/pipeline-sessions/{pipeline}/events", Owned),
    row("POST", "/api/v1/pipeline-sessions/{pipeline}/cancel", Owned),
    row("GET", "/api/v1/events", Own),
    row("GET", "/api/v1/events?task_id={task_id}", Owned),
    row("GET", "/api/v1/events?user_id=alice", Admin),
    row("GET", "/api/v1/events?all=true", Admin),
    row("POST", "/api/v1/events/ticket", Own),
    row("GET", "/ws", Own),
    row("GET", "/ws?task_id={task_id}", Owned),
    row("GET", "/ws?user_id=alice", Admin),
    row("GET", "/", Public),
    row("GET", "/healthz", Public),
    row("GET", "/readyz", Public),
    row("GET", "/metrics", Public),
    row("GET", "/openapi.json", Public),
    row("GET", "/docs", Public),
    row("GET", "/docs/swagger-ui-bundle.js", Public),
    row("GET", "/docs/swagger-ui.css", Public),
    row("GET", "/docs/init.js", Public),
];

/// A row's route as the router writes it.
fn route_of(row: &Row) -> String {
    let path = row.path.split('?').next().unwrap();
    let named = path
        .replace("{chat}", "{session_id}")
        .replace("{pipeline}", "{id}")
        .replace("{queue}", "{name}")
        .replace("{provider}", "{name}")
        .replace("{projection}", "{name}")
        .replace("/alice/daily", "/{user_id}/daily")
        .replace("budgets/alice", "budgets/{user_id}")
        .replace("matrix-1", "{stream_id}")
        .replace("types/Tested", "types/{event_type}")
        .replace("pipelines/menu/", "pipelines/{name}/");
    let named = match named.strip_suffix("/users/alice") {
        Some(p) => format!("{p}/users/{{user_id}}"),
        None => named,
    };
    format!("{} {named}", row.method)
}

#[test]
fn every_route_has_a_row_and_every_row_a_route() {
    let routes: BTreeSet<String> = router_routes()
        .into_iter()
        .map(|(method, path)| format!("{} {path}", method.to_uppercase()))
        .collect();
    let rows: BTreeSet<String> = ROWS.iter().map(route_of).collect();
    let missing: Vec<_> = routes.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&routes).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes without a row: {missing:?}; rows without a route: {stale:?}"
    );
}

/// What alice owns, for the placeholders.
pub struct Fixture {
    pub task: String,
    pub job: String,
    pub chat: String,
    pub pipeline: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    let (status, task) = app
        .submit("alice", serde_json::from_str(ECHO).unwrap())
        .await;
    assert_eq!(status, 202, "{task}");
    let job = app
        .http
        .post(format!("{}/api/v1/jobs", app.base))
        .bearer_auth(app.token("alice"))
        .header("content-type", "application/json")
        .body(JOB)
        .send()
        .await
        .unwrap();
    assert!(job.status().is_success(), "{:?}", job.text().await);
    let job: serde_json::Value = job.json().await.unwrap();
    let chat = crate::chat_support::started(app, "alice", "matrix").await;
    let pipeline = create(
        app,
        "alice",
        "menu",
        vec![json!({"id": "m1", "name": "唐揚げ"})],
    )
    .await;
    Fixture {
        task: task["task_id"].as_str().unwrap().to_owned(),
        job: job["job_id"].as_str().unwrap().to_owned(),
        chat,
        pipeline,
    }
}

impl Fixture {
    /// Ids that name nothing, for checks of the tables alone.
    pub fn placeholder() -> Self {
        let id = || uuid::Uuid::nil().to_string();
        Fixture {
            task: id(),
            job: id(),
            chat: id(),
            pipeline: id(),
        }
    }

    fn fill(&self, path: &str) -> String {
        path.replace("{task_id}", &self.task)
            .replace("{job_id}", &self.job)
            .replace("{chat}", &self.chat)
            .replace("{pipeline}", &self.pipeline)
            .replace("{queue}", "default")
            .replace("{provider}", "compat")
            .replace("{projection}", "user_progress")
    }

    /// Alice's ids, none of which bob may see.
    pub fn ids(&self) -> [&str; 4] {
        [&self.task, &self.job, &self.chat, &self.pipeline]
    }
}

/// Status and (for non-stream answers) body of one call; `token` None sends none.
async fn call(app: &TestApp, row: &Row, path: &str, token: Option<&str>) -> (u16, String) {
    if path.starts_with("/ws") {
        return ws_handshake(app, path, token).await;
    }
    let method = Method::from_bytes(row.method.as_bytes()).unwrap();
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(body) = row.body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let streaming = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    // A stream's body never ends; its status says enough.
    let body = if streaming {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    (status, body)
}

async fn matrix(mode: Mode) {
    // A provider to reset, disable and enable; nothing listens there, and no call needs it.
    let vars = [
        ("OPENAI_COMPAT_BASE_URL", "http://127.0.0.1:9/v1"),
        ("OPENAI_COMPAT_API_KEY", "matrix"),
    ];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    let fx = fixture(&app).await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let admin = app.token_with(
        "ops",
        ai_integration_service::auth::Role::Admin,
        std::time::Duration::from_secs(600),
    );
    let service = app.token_with(
        "backend",
        ai_integration_service::auth::Role::Service,
        std::time::Duration::from_secs(600),
    );
    let mut failures = Vec::new();
    for row in ROWS {
        let path = fx.fill(row.path);
        let what = format!("{} {path} ({:?})", row.method, row.access);
        let (anon, _) = call(&app, row, &path, None).await;
        match row.access {
            Public if anon == 401 || anon == 403 => {
                failures.push(format!("{what}: anonymous {anon}"))
            }
            Public => {}
            _ if anon != 401 => failures.push(format!("{what}: anonymous got {anon}, not 401")),
            _ => {}
        }
        let (as_bob, body) = call(&app, row, &path, Some(&bob)).await;
        let expected = match row.access {
            Public | Own => None,
            Owned => Some(404),
            OtherUser | Admin | Backend => Some(403),
        };
        match expected {
            Some(code) if as_bob != code => {
                failures.push(format!("{what}: bob got {as_bob}, not {code}: {body}"))
            }
            None if matches!(as_bob, 401 | 403 | 404 | 500) => failures.push(format!(
                "{what}: bob refused on his own data: {as_bob} {body}"
            )),
            None => {
                if let Some(id) = fx.ids().into_iter().find(|id| body.contains(id)) {
                    failures.push(format!("{what}: bob saw alice's {id}"));
                }
            }
            _ => {}
        }
        // Someone may: the row is not refusing everyone. (A provider that cannot answer, 502,
        // is past every check.)
        let allowed = match row.access {
            Public | Own => None,
            Owned | OtherUser => Some(&alice),
            Admin => Some(&admin),
            Backend => Some(&service),
        };
        if let Some(token) = allowed {
            let (status, body) = call(&app, row, &path, Some(token)).await;
            if matches!(status, 401 | 403 | 404 | 500) {
                failures.push(format!("{what}: the allowed caller got {status}: {body}"));
            }
        }
    }
    let callers = Callers {
        alice: &alice,
        bob: &bob,
        admin: &admin,
        service: &service,
    };
    // The HTTP rows closed alice's chat and cancelled her task and session: fresh ones.
    let fx = fixture(&app).await;
    failures.extend(crate::authz_grpc::failures(&app, &fx, &callers).await);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.cleanup().await;
}

both_modes!(every_route_and_method_refuses_whom_it_should, matrix);

/// A WebSocket connection on `path` (`/ws?…`) as an HTTP-like status: a refused upgrade's
/// own; after an upgrade, the close that refuses the stream (reason `unauthenticated…` 401,
/// `…not found` 404, any other policy close 403) or 101 when it is served. Without a token the
/// client sends a frame that is not an auth frame, as a client without credentials would.
async fn ws_handshake(app: &TestApp, path: &str, token: Option<&str>) -> (u16, String) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{Error, Message as Frame};
    let url = format!("{}{path}", app.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let mut ws = match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => ws,
        Err(Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return (resp.status().as_u16(), body);
        }
        Err(e) => panic!("WebSocket handshake on {path}: {e}"),
    };
    if token.is_none() {
        ws.send(Frame::text(r#"{"type": "hello"}"#)).await.ok();
    }
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            Ok(Some(Ok(Frame::Close(Some(frame))))) => {
                let reason = frame.reason.to_string();
                let status = if reason.starts_with("unauthenticated") {
                    401
                } else if reason.contains("not found") {
                    404
                } else {
                    403
                };
                break (status, reason);
            }
            Ok(Some(Ok(Frame::Ping(_) | Frame::Pong(_)))) => continue,
            Ok(Some(Ok(Frame::Text(t)))) => break (101, t.to_string()),
            Ok(other) => panic!("WebSocket on {path}: {other:?}"),
            Err(_) => break (101, String::new()),
        }
    };
    ws.close(None).await.ok();
    outcome
}
