//! Issue 18: every task type's payload is checked at submit, over HTTP and gRPC, alone and in
//! a batch; a bad one answers 400 / INVALID_ARGUMENT naming the field, stores nothing and
//! calls no provider. Also the deployment's submit policy: echo off, tiers, the ceiling.

use std::time::Duration;

use ai_integration_service::api::grpc::convert::json_to_value;
use ai_integration_service::api::proto::{SubmitTaskRequest, SubmitTasksRequest};
use ai_integration_service::auth::Role;
use ai_integration_service::domain::Tier;
use prost_types::value::Kind;
use serde_json::{Value, json};
use tonic::{Code, Request};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};
use crate::support::fake_providers::FakeProviders;

/// `(type, payload, what the error must say)`: at least one bad payload per type, covering
/// missing, empty, wrong JSON type, out of range, unknown and oversized fields.
fn bad_payloads() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "summarize",
            json!({}),
            "payload.text is required (or content)",
        ),
        (
            "summarize",
            json!({"text": ""}),
            "payload.text must not be empty",
        ),
        (
            "summarize",
            json!({"text": "  \n "}),
            "payload.text must not be empty",
        ),
        (
            "summarize",
            json!({"text": 42}),
            "payload.text must be a string, got a number",
        ),
        (
            "summarize",
            json!({"text": "t", "length": "epic"}),
            "payload.length must be one of short, medium, long",
        ),
        (
            "summarize",
            json!({"text": "t", "article_id": "x"}),
            "payload.article_id is not a known field",
        ),
        (
            "summarize",
            json!({"text": "x".repeat(200_001)}),
            "payload.text is 200001 characters",
        ),
        (
            "summarize",
            json!({"text": "t", "max_tokens": 1_000_000}),
            "payload.max_tokens must be a whole number from 16 to 8192",
        ),
        (
            "summarize",
            json!({"text": "t", "temperature": "hot"}),
            "payload.temperature must be a number",
        ),
        (
            "item_info_generation",
            json!({"language": "en"}),
            "payload.item is required",
        ),
        (
            "item_info_generation",
            json!({"item": ["a"]}),
            "payload.item must be a string, got a list",
        ),
        (
            "item_info_generation",
            json!({"item": "w", "language": "English please"}),
            "payload.language must be a language code",
        ),
        ("extract_content", json!({}), "payload.url is required"),
        (
            "extract_content",
            json!({"url": "not a url"}),
            "payload.url must be an absolute http or https URL",
        ),
        (
            "extract_content",
            json!({"url": "ftp://example.com/a"}),
            "payload.url must be an absolute http or https URL",
        ),
        (
            "image_generation",
            json!({"count": 2}),
            "payload.prompt is required (or query or description)",
        ),
        (
            "image_generation",
            json!({"prompt": "cat", "style": "oil"}),
            "payload.style must be one of",
        ),
        (
            "image_generation",
            json!({"prompt": "cat", "count": 0}),
            "payload.count must be a whole number from 1 to 4",
        ),
        (
            "validate_summary",
            json!({"summary": "s"}),
            "payload.original is required",
        ),
        (
            "validate_summary",
            json!({"original": "o"}),
            "payload.summary is required",
        ),
        (
            "test_customization",
            json!({"instruction": "easy"}),
            "payload.items is required",
        ),
        (
            "test_customization",
            json!({"items": []}),
            "payload.items must list at least one item",
        ),
        (
            "test_customization",
            json!({"items": "a,b"}),
            "payload.items must be a list, got a string",
        ),
        (
            "test_customization",
            json!({"items": ["a"], "question_count": 50}),
            "payload.question_count must be a whole number from 1 to 20",
        ),
        (
            "echo",
            json!({"delay_ms": "soon"}),
            "payload.delay_ms must be a whole number",
        ),
    ]
}

/// A valid payload of every type; a batch with one of these and a bad one stores neither.
fn good_payload(task_type: &str) -> Value {
    match task_type {
        "summarize" => json!({"text": "A text."}),
        "item_info_generation" => json!({"item": "serendipity"}),
        "extract_content" => json!({"url": "https://example.com/a"}),
        "image_generation" => json!({"prompt": "a cat"}),
        "validate_summary" => json!({"original": "o", "summary": "s"}),
        "test_customization" => json!({"items": ["a"]}),
        _ => json!({}),
    }
}

fn grpc_request(task_type: &str, payload: &Value) -> SubmitTaskRequest {
    let Some(Kind::StructValue(payload)) = json_to_value(payload.clone()).kind else {
        panic!("payloads are objects");
    };
    SubmitTaskRequest {
        r#type: task_type.into(),
        payload: Some(payload),
        ..Default::default()
    }
}

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn post(app: &TestApp, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn every_bad_payload_is_refused_everywhere(mode: Mode) {
    // Every provider is configured, so a payload that slipped through would reach one.
    let fake = FakeProviders::start().await;
    let mut vars = Vec::new();
    for (p, key, url) in [
        ("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
        ("groq", "GROQ_API_KEY", "GROQ_BASE_URL"),
        ("unsplash", "UNSPLASH_API_KEY", "UNSPLASH_BASE_URL"),
    ] {
        vars.push((key, fake.key(p)));
        vars.push((url, fake.base_url(p)));
    }
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let Some(app) = spawn_app(mode, &refs).await else {
        return;
    };
    let token = app.token("alice");
    let mut grpc = app.grpc().await;
    for (task_type, payload, want) in bad_payloads() {
        let body = json!({"type": task_type, "payload": payload});
        let (status, err) = post(&app, "/api/v1/tasks", &token, &body).await;
        assert_eq!(status, 400, "{task_type} {payload}: {err}");
        assert_eq!(err["error"]["code"], "invalid_argument");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(want),
            "HTTP {task_type}: {msg:?} should start with {want:?}"
        );

        let batch =
            json!({"tasks": [{"type": task_type, "payload": good_payload(task_type)}, body]});
        let (status, err) = post(&app, "/api/v1/tasks/batch", &token, &batch).await;
        assert_eq!(status, 400, "{err}");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("tasks[1]: {want}")),
            "HTTP batch: {msg:?}"
        );

        let err = grpc
            .submit_task(authed(&token, grpc_request(task_type, &payload)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(
            err.message().starts_with(want),
            "gRPC {task_type}: {:?}",
            err.message()
        );

        let batch = SubmitTasksRequest {
            tasks: vec![
                grpc_request(task_type, &good_payload(task_type)),
                grpc_request(task_type, &payload),
            ],
        };
        let err = grpc.submit_tasks(authed(&token, batch)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with(&format!("tasks[1]: {want}")),
            "gRPC batch: {:?}",
            err.message()
        );
    }
    let (status, list) = app.get("alice", "/api/v1/tasks").await;
    assert_eq!(status, 200);
    assert_eq!(list["tasks"], json!([]), "a refused submit stores nothing");
    for p in ["openai", "groq", "unsplash"] {
        assert_eq!(fake.request_count(p), 0, "{p} was called");
    }
    app.cleanup().await;
}
both_modes!(
    every_bad_payload_is_refused_everywhere,
    every_bad_payload_is_refused_everywhere
);

async fn good_payloads_of_every_type_are_accepted(mode: Mode) {
    let Some(app) = spawn_app(
        mode,
        &[("WORKER_POOL_SIZE", "1"), ("QUEUES", "default:priority")],
    )
    .await
    else {
        return;
    };
    let token = app.token("bob");
    let tasks: Vec<Value> = [
        "summarize",
        "item_info_generation",
        "extract_content",
        "image_generation",
        "validate_summary",
        "test_customization",
        "echo",
    ]
    .iter()
    .map(|t| json!({"type": t, "payload": good_payload(t)}))
    .collect();
    let (status, body) = post(
        &app,
        "/api/v1/tasks/batch",
        &token,
        &json!({"tasks": tasks}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["tasks"].as_array().unwrap().len(), 7);
    app.cleanup().await;
}
both_modes!(
    good_payloads_of_every_type_are_accepted,
    good_payloads_of_every_type_are_accepted
);

/// The README's task-type table is the one the schemas make.
#[test]
fn readme_task_table_matches_the_schemas() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = ai_integration_service::domain::payload::markdown_table();
    assert!(
        readme.contains(&table),
        "README.md's task-type table differs from the schemas; paste the output of \
         `cargo run -q -- task-types` in its place:\n{table}"
    );
}

async fn echo_is_a_development_tool(mode: Mode) {
    // The suites turn echo on; the default is on in embedded mode only.
    let Some(app) = spawn_app(mode, &[("ENABLE_ECHO", ""), ("TASK_TIMEOUT", "2s")]).await else {
        return;
    };
    let (status, body) = app.submit("carol", json!({"type": "echo"})).await;
    match mode {
        Mode::Embedded => assert_eq!(status, 202, "{body}"),
        Mode::Clustered => {
            assert_eq!(status, 400, "{body}");
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(msg.contains("ENABLE_ECHO"), "{msg}");
        }
    }
    if mode == Mode::Embedded {
        let (status, body) = app
            .submit(
                "carol",
                json!({"type": "echo", "payload": {"delay_ms": 2001}}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("TASK_TIMEOUT")
        );
    }
    app.cleanup().await;
}
both_modes!(echo_is_a_development_tool, echo_is_a_development_tool);

async fn tiers_raise_priorities_under_the_ceiling(mode: Mode) {
    let Some(app) = spawn_app(
        mode,
        &[("MAX_USER_PRIORITY", "8"), ("DIRECT_DISPATCH", "false")],
    )
    .await
    else {
        return;
    };
    let ttl = Duration::from_secs(600);
    let text = json!({"type": "summarize", "payload": {"text": "t"}});
    for (tier, want) in [(None, 7), (Some(Tier::Pro), 8), (Some(Tier::Enterprise), 8)] {
        let token = app.token_with_tier("dave", Role::User, tier, ttl);
        let (status, task) = post(&app, "/api/v1/tasks", &token, &text).await;
        assert_eq!(status, 202, "{task}");
        assert_eq!(task["priority"], want, "{tier:?}");
    }
    let token = app.token_with_tier("dave", Role::User, Some(Tier::Enterprise), ttl);
    let high = json!({"type": "echo", "priority": 9});
    let (status, err) = post(&app, "/api/v1/tasks", &token, &high).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_USER_PRIORITY")
    );
    // Over gRPC too.
    let mut grpc = app.grpc().await;
    let mut req = grpc_request("echo", &json!({}));
    req.priority = Some(9);
    let err = grpc.submit_task(authed(&token, req)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Admins may use the whole range.
    let admin = app.token_with("ops", Role::Admin, ttl);
    let top = json!({"type": "echo", "priority": 10});
    let (status, task) = post(&app, "/api/v1/tasks", &admin, &top).await;
    assert_eq!(
        (status, task["priority"].as_u64()),
        (202, Some(10)),
        "{task}"
    );
    app.cleanup().await;
}
both_modes!(
    tiers_raise_priorities_under_the_ceiling,
    tiers_raise_priorities_under_the_ceiling
);
