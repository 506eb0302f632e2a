//! The OpenAPI document (`/openapi.json`) names every route of the router, and the service
//! keeps its word: schemathesis (`st`, from PyPI; `.ci/run` installs it) attacks a live server
//! in each mode from the document alone and finds no 5xx, no crash and no answer the document
//! does not describe.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ai_integration_service::auth::Role;
use serde_json::Value;

use crate::helpers::{Mode, both_modes, router_routes, spawn_app};
use crate::support;

/// Examples per operation in the suite's run: each mode's run stays well under two minutes.
/// `SCHEMATHESIS_MAX_EXAMPLES` raises it for a longer run (docs/testing.md).
const MAX_EXAMPLES: &str = "12";

/// Operations schemathesis skips: streams that never end on their own (SSE), which its
/// request timeout would report as failures. Their errors are tested in `notify.rs`,
/// `dashboard.rs`, `eventstore.rs` and `pipelines.rs`.
const ENDLESS: &str = "^/api/v1/(events|admin/dashboard/stream|eventstore/subscribe|pipeline-sessions/\\{id\\}/events)$";
/// `/ws` answers only a WebSocket handshake, which an HTTP fuzzer does not make (a plain GET
/// gets 400 with the error shape, checked in [`docs_page_loads_only_its_own_files`]'s sibling
/// below); `notify.rs` drives it with a WebSocket client.
const NOT_HTTP: &str = "/ws";

/// `(method, path)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                ops.insert((method.to_owned(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn every_route_is_in_the_document() {
    let app = spawn_app(Mode::Embedded, &[]).await.unwrap();
    // No token: the document is public, like the pages.
    let resp = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = resp.json().await.unwrap();
    // OPENAPI_DUMP=path writes the document out, for a look or a run of another tool.
    if let Ok(path) = std::env::var("OPENAPI_DUMP") {
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));

    let router = router_routes();
    let documented = documented(&doc);
    let missing: Vec<_> = router.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&router).collect();
    assert!(
        missing.is_empty(),
        "routes without a document entry: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "documented operations no route serves: {extra:?}"
    );

    // The bearer scheme, required by every API operation; the pages and health need none.
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        let public = [
            "/",
            "/dashboard",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ]
        .contains(&path.as_str())
            || path.starts_with("/docs")
            || path.starts_with("/dashboard/");
        assert_eq!(
            secured, !public,
            "{method} {path}: security {}",
            op["security"]
        );
        if secured {
            // Every secured operation describes its errors with the one error shape.
            let unauthorized = &op["responses"]["401"]["content"]["application/json"]["schema"];
            assert_eq!(
                unauthorized["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path}"
            );
        }
    }
    let ids: Vec<&str> = documented
        .iter()
        .map(|(m, p)| doc["paths"][p][m]["operationId"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "operation ids repeat: {ids:?}");
    let error = &doc["components"]["schemas"]["ErrorDetail"];
    assert_eq!(error["required"], serde_json::json!(["code", "message"]));
    app.cleanup().await;
}

#[tokio::test]
async fn docs_page_loads_only_its_own_files() {
    let app = spawn_app(Mode::Embedded, &[]).await.unwrap();
    let get = |path: &str| app.http.get(format!("{}{path}", app.base)).send();
    let page = get("/docs").await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let init = get("/docs/init.js").await.unwrap().text().await.unwrap();
    // No CDN: the page and its start-up script name only this server's paths.
    for text in [&html, &init] {
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{text}"
        );
    }
    assert!(init.contains("/openapi.json"));
    for (path, kind) in [
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/init.js", "text/javascript"),
    ] {
        assert!(html.contains(path), "{path} not on the page");
        let resp = get(path).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(resp.bytes().await.unwrap().len() > 20, "{path}");
    }
    app.cleanup().await;
}

/// Whether `st` is installed; under CI its absence fails the test.
fn schemathesis_available() -> bool {
    let runs = std::process::Command::new("st").arg("--version").output();
    if runs.is_ok_and(|out| out.status.success()) {
        return true;
    }
    assert!(
        !support::in_ci(),
        "schemathesis must be installed under CI (pip install schemathesis)"
    );
    eprintln!("SKIPPED: schemathesis is not installed (pip install schemathesis)");
    false
}

both_modes!(schemathesis_finds_nothing, schemathesis_run);

/// Schemathesis against a live server in `mode`: every check, a bounded number of examples.
async fn schemathesis_run(mode: Mode) {
    if !schemathesis_available() {
        return;
    }
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    // An admin reaches every operation, the admin-only ones included.
    let token = app.token_with("fuzz-admin", Role::Admin, Duration::from_secs(3600));
    let examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or(MAX_EXAMPLES.into());
    let started = Instant::now();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis.toml");
    // Its working directory gets its crash cache: a scratch one, not the repository.
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = tokio::process::Command::new("st")
        .current_dir(scratch.path())
        .args([
            "--config-file",
            config,
            "run",
            &format!("{}/openapi.json", app.base),
        ])
        // Every check runs: the config file turns one off on a few operations, saying why.
        .args(["--max-examples", &examples])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--exclude-path-regex", ENDLESS, "--exclude-path", NOT_HTTP])
        // One worker: the requests run in one order, so a failure replays the same way.
        .args(["--request-timeout", "20", "--workers", "1"])
        .args(["--generation-database", "none", "--no-color"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .await
        .expect("st runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "schemathesis ({mode:?}, {examples} examples per operation) took {:.0?}:\n{stdout}",
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "schemathesis found failures in {mode:?} mode (its report is above):\n{stderr}"
    );
    app.cleanup().await;
}

both_modes!(findings_stay_fixed, what_schemathesis_found_stays_fixed);

/// The bugs schemathesis found, one request each (docs/testing.md lists them).
async fn what_schemathesis_found_stays_fixed(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let admin = app.token_with("root", Role::Admin, Duration::from_secs(600));
    let send = |method: reqwest::Method, path: &str, body: Option<&str>| {
        let mut req = app
            .http
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(&admin);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        req.send()
    };
    let status_and_code = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or_default();
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };

    // NUL in a JSON body: PostgreSQL stores it neither in jsonb nor in text (was 503).
    let resp = send(
        reqwest::Method::POST,
        "/api/v1/chat/sessions",
        Some(r#"{"item_id": "x", "context": {"k": "a\u0000b"}}"#),
    )
    .await
    .unwrap();
    assert_eq!(
        status_and_code(resp).await,
        (400, "invalid_argument".into())
    );

    // f64::MAX comes back from jsonb as 309 digits; the stream stays readable (was 500 forever).
    let event = r#"{"events": [{"type": "Big", "data": {"x": -1.7976931348623157e308}}]}"#;
    let resp = send(
        reqwest::Method::POST,
        "/api/v1/eventstore/streams/big",
        Some(event),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = send(reqwest::Method::GET, "/api/v1/eventstore/streams/big", None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["events"][0]["data"]["x"], -f64::MAX);

    // A window of millennia (was 503) or of millions of years (was a panic).
    for window in ["383285636135", "9000000000000000"] {
        let path = format!("/api/v1/admin/providers?window_seconds={window}");
        let resp = send(reqwest::Method::GET, &path, None).await.unwrap();
        assert_eq!(
            status_and_code(resp).await,
            (400, "invalid_argument".into())
        );
    }

    // `/ws` without a handshake: the JSON error, not axum's plain text.
    let resp = send(reqwest::Method::GET, "/ws", None).await.unwrap();
    assert_eq!(
        status_and_code(resp).await,
        (400, "invalid_argument".into())
    );
    app.cleanup().await;
}
