//! The canaries, and the four paths they travel.

use std::time::Duration;

use ai_integration_service::api::proto::SubmitTaskRequest;
use serde_json::{Value, json};
use tonic::{Code, Request};

use crate::capture::logs;
use crate::helpers::{Mode, TestApp, both_modes, spawn_app};
use crate::support::fake_providers::{FakeProviders, Fault};

pub const KEY: &str = "sk-proj-CANARYkey0123456789abcdef";
const GROQ_KEY: &str = "gsk_CANARYgroq0123456789abc";
const GOOGLE_KEY: &str = "AIzaCANARYgoogle0123456789abcdefghijklm";
pub const EMAIL: &str = "canary.user@example.com";
const PHONE: &str = "+81-90-1234-5678";
const US_PHONE: &str = "(555) 123-4567";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.Q0FOQVJZc2lnbmF0dXJl";
const OPAQUE_TOKEN: &str = "canaryOpaqueToken0123";

/// What must never be seen: each canary, or a telling piece of it.
pub const NEVER: [&str; 10] = [
    "CANARYkey",
    "CANARYgroq",
    "CANARYgoogle",
    "canary.user",
    "1234-5678",
    "123-4567",
    "eyJhbGciOiJIUzI1NiJ9",
    "eyJzdWIiOiJjYW5hcnkifQ",
    "Q0FOQVJZc2lnbmF0dXJl",
    OPAQUE_TOKEN,
];

/// Every canary in one sentence.
fn sentence() -> String {
    format!(
        "contact {EMAIL} or {PHONE} / {US_PHONE}; keys {KEY} {GROQ_KEY} {GOOGLE_KEY}; \
         token Bearer {OPAQUE_TOKEN} and {JWT}"
    )
}

pub fn assert_clean_text(what: &str, text: &str) {
    for canary in NEVER {
        assert!(
            !text.contains(canary),
            "{canary:?} leaked into {what}: {text}"
        );
    }
}

/// Checks that `text` was masked, not merely dropped: the placeholders are there.
fn assert_masked(what: &str, text: &str) {
    assert_clean_text(what, text);
    for placeholder in ["[email]", "[phone]", "[api-key]"] {
        assert!(
            text.contains(placeholder),
            "no {placeholder} in {what}: {text}"
        );
    }
}

pub async fn app(mode: Mode, vars: &[(&str, &str)]) -> Option<TestApp> {
    // Installed before the app starts, so its first lines are captured.
    logs();
    spawn_app(mode, vars).await
}

/// (a) A provider's error bodies carry the canaries, once as a 500 with a plain-text body and
/// once as its JSON 400: the task's stored error and its attempts are masked, and so are the
/// log lines about them.
async fn provider_error_bodies(mode: Mode) {
    let fake = FakeProviders::start().await;
    let (key, url) = (fake.key("groq"), fake.base_url("groq"));
    let Some(app) = app(
        mode,
        &[
            ("GROQ_API_KEY", &key),
            ("GROQ_BASE_URL", &url),
            ("AI_REQUEST_TIMEOUT", "2s"),
            // The 500 must fail the attempt, not end in a summary by extraction.
            ("AI_FALLBACK_ENABLED", "false"),
        ],
    )
    .await
    else {
        return;
    };
    fake.push_fault(
        "groq",
        Fault::Status {
            code: 500,
            body: format!("upstream broke: {}", sentence()),
            headers: Vec::new(),
        },
    );
    fake.push_fault("groq", Fault::error("groq", 400, &sentence()));
    let (status, task) = app
        .submit(
            "ann",
            json!({"type": "summarize", "payload": {"text": "hello"}}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let id = task["task_id"].as_str().unwrap().to_owned();
    let task = app.wait_terminal("ann", &id, Duration::from_secs(20)).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_masked(
        "the task's error",
        task["error"]["message"].as_str().unwrap(),
    );
    assert_clean_text("the task", &task.to_string());
    let (status, attempts) = app
        .get("ann", &format!("/api/v1/tasks/{id}/attempts"))
        .await;
    assert_eq!(status, 200, "{attempts}");
    assert_clean_text("the attempts", &attempts.to_string());
    let failed = logs().wait_for("attempt failed", "task_id", &id).await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    for line in &failed {
        assert_masked("an attempt's log line", line["error"].as_str().unwrap());
    }
    logs().assert_clean(&NEVER);
    app.cleanup().await;
}
both_modes!(provider_error_bodies, provider_error_bodies);

/// (b) A bad request quoting the canaries: the HTTP 400 and the gRPC INVALID_ARGUMENT
/// messages name the problem with the canaries masked, and the debug line about it is masked.
async fn bad_requests(mode: Mode) {
    let Some(app) = app(mode, &[]).await else {
        return;
    };
    let sentence = sentence();
    // An unknown type, quoted by the message.
    let (status, body) = app
        .submit("ann", json!({"type": sentence, "payload": {}}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_masked("the HTTP 400", body["error"]["message"].as_str().unwrap());
    // An unknown payload field, named by the message.
    let (status, body) = app
        .submit(
            "ann",
            json!({"type": "summarize", "payload": {"text": "x", sentence.clone(): 1}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_masked("the HTTP 400", body["error"]["message"].as_str().unwrap());
    // The same over gRPC.
    let mut grpc = app.grpc().await;
    let mut request = Request::new(SubmitTaskRequest {
        r#type: sentence.clone(),
        ..Default::default()
    });
    let bearer = format!("Bearer {}", app.token("ann"));
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let status = grpc.submit_task(request).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_masked("the gRPC status", status.message());
    let refused = logs()
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == "request refused" && l["code"] == "invalid_argument")
        .count();
    assert!(refused >= 3, "the refusals were not logged");
    logs().assert_clean(&NEVER);
    app.cleanup().await;
}
both_modes!(bad_requests, bad_requests);

/// (c) A task's payload is logged at debug level when it is submitted: masked.
async fn payloads_at_debug_level(mode: Mode) {
    let Some(app) = app(mode, &[]).await else {
        return;
    };
    let (status, task) = app
        .submit(
            "ann",
            json!({"type": "echo", "payload": {"note": sentence(), "nested": {"email": EMAIL}}}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let id = task["task_id"].as_str().unwrap();
    let lines = logs().wait_for("task submitted", "task_id", id).await;
    let payload = lines[0]["payload"].as_str().unwrap();
    assert_masked("the logged payload", payload);
    assert!(
        logs()
            .text()
            .lines()
            .any(|l| l.contains("task submitted") && l.contains(id)),
        "no text line for {id}"
    );
    // The owner gets their own data back untouched: only what leaves for others is masked.
    let done = app.wait_terminal("ann", id, Duration::from_secs(10)).await;
    assert_eq!(done["result"]["nested"]["email"], EMAIL, "{done}");
    logs().assert_clean(&NEVER);
    app.cleanup().await;
}
both_modes!(payloads_at_debug_level, payloads_at_debug_level);

/// (d) A request whose `Authorization` header carries a canary JWT or opaque token is refused
/// without the token in the answer or the logs.
async fn rejected_authorization(mode: Mode) {
    let Some(app) = app(mode, &[]).await else {
        return;
    };
    for token in [JWT, OPAQUE_TOKEN] {
        let resp = app
            .http
            .get(format!("{}/api/v1/tasks", app.base))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_clean_text("the 401", &body.to_string());

        let mut grpc = app.grpc().await;
        let mut request = Request::new(SubmitTaskRequest {
            r#type: "echo".into(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let status = grpc.submit_task(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_clean_text("the gRPC status", status.message());
    }
    assert!(
        logs()
            .json_lines()
            .iter()
            .any(|l| l["message"] == "request refused" && l["code"] == "unauthenticated"),
        "the refusals were not logged"
    );
    logs().assert_clean(&NEVER);
    app.cleanup().await;
}
both_modes!(rejected_authorization, rejected_authorization);
