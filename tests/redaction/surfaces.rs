//! (e) The service configured with canary secrets (a provider key that the provider echoes in
//! its 401, as OpenAI does, and the JWT secret) and driven into a failure: no canary, no key,
//! no token reaches what operators and users read: the task, the dead letters, the provider
//! report, the audit log, `/metrics`, the dashboard's stream, the gRPC status, the logs.
//! (f) A panic quoting a secret is logged masked, not written raw to stderr.

use std::time::Duration;

use ai_integration_service::auth::Role;
use futures::StreamExt;
use serde_json::json;

use crate::canaries::{EMAIL, KEY, NEVER, assert_clean_text};
use crate::capture::logs;
use crate::helpers::{JWT_SECRET, Mode, TestApp, both_modes};
use crate::support::fake_providers::FakeProviders;

/// An admin's GET, as text.
async fn admin_get(app: &TestApp, token: &str, path: &str) -> String {
    let resp = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.text().await.unwrap()
}

/// What the dashboard's stream sends in its first seconds.
async fn dashboard_frames(app: &TestApp, token: &str) -> String {
    let resp = app
        .http
        .get(format!("{}/api/v1/admin/dashboard/stream", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(until, body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("data:"), "no dashboard frame: {text}");
    text
}

async fn configured_secrets(mode: Mode) {
    let fake = FakeProviders::start().await;
    fake.set_key("openai", Some("the-right-key"));
    let Some(app) = crate::canaries::app(
        mode,
        &[
            ("OPENAI_API_KEY", KEY),
            ("OPENAI_BASE_URL", &fake.base_url("openai")),
            ("AI_FALLBACK_ENABLED", "false"),
            ("METRICS_ENABLED", "true"),
        ],
    )
    .await
    else {
        return;
    };
    let user = app.token("ann");
    let admin = app.token_with("ops", Role::Admin, Duration::from_secs(600));
    let (status, task) = app
        .submit(
            "ann",
            json!({"type": "summarize", "payload": {"text": format!("write to {EMAIL}")}}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let id = task["task_id"].as_str().unwrap().to_owned();
    let task = app.wait_terminal("ann", &id, Duration::from_secs(20)).await;
    assert_eq!(task["status"], "failed", "{task}");
    // The provider quoted the key; the stored error says what happened without it.
    let message = task["error"]["message"].as_str().unwrap();
    assert!(message.contains("Incorrect API key"), "{message}");
    // An admin action, so the audit log has a row about this task.
    let resp = app
        .http
        .post(format!("{}/api/v1/admin/dead-letters/requeue", app.base))
        .bearer_auth(&admin)
        .json(&json!({"task_ids": [id]}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());

    let mut seen = vec![("the task".to_owned(), task.to_string())];
    for path in [
        "/api/v1/admin/dead-letters",
        "/api/v1/admin/providers",
        "/api/v1/admin/audit",
        "/api/v1/admin/queue/stats",
        &format!("/api/v1/tasks/{id}/attempts"),
        "/metrics",
    ] {
        seen.push((path.to_owned(), admin_get(&app, &admin, path).await));
    }
    seen.push(("the dashboard".into(), dashboard_frames(&app, &admin).await));
    let tokens = [user.as_str(), admin.as_str()];
    for (what, text) in &seen {
        assert_clean_text(what, text);
        assert!(!text.contains(JWT_SECRET), "the JWT secret in {what}");
        for t in tokens {
            assert!(!text.contains(t), "a bearer token in {what}");
        }
    }
    logs().assert_clean(&NEVER);
    logs().assert_clean(&[JWT_SECRET, &user, &admin]);
    app.cleanup().await;
}
both_modes!(configured_secrets, configured_secrets);

/// (f) The service's panic hook logs a panic through the masking layer.
#[tokio::test]
async fn a_panic_quoting_a_secret_is_logged_masked() {
    logs();
    // The test harness's own hook is put back, so other tests' failures still print.
    let harness = std::panic::take_hook();
    ai_integration_service::telemetry::panics::install();
    let quoted = format!("bad input from {EMAIL} with key {KEY}");
    let outcome = std::thread::Builder::new()
        .name("canary-panic".into())
        .spawn(move || panic!("{quoted}"))
        .unwrap()
        .join();
    std::panic::set_hook(harness);
    assert!(outcome.is_err());
    let lines = logs().wait_for("panicked", "thread", "canary-panic").await;
    let line = lines[0].to_string();
    assert!(
        line.contains("[email]") && line.contains("[api-key]"),
        "{line}"
    );
    assert!(line.contains("surfaces.rs"), "the location is kept: {line}");
    logs().assert_clean(&NEVER);
}
