//! OpenTelemetry traces end to end: real server processes export to a real OTLP receiver
//! (`otlp.rs`), over HTTP/protobuf in embedded mode and over gRPC in clustered mode. A caller's
//! `traceparent` (HTTP header or gRPC metadata) becomes the parent of the submit's server span;
//! the task stores that span's context, and the worker's `task.run` and each
//! `provider.attempt` continue the trace, also when another instance runs the task. Spans are
//! flushed every 100 ms (`OTEL_BSP_SCHEDULE_DELAY`) and when an instance stops.

use std::collections::HashMap;
use std::time::Duration;

use ai_integration_service::api::proto::SubmitTaskRequest;
use ai_integration_service::api::proto::task_service_client::TaskServiceClient;
use ai_integration_service::auth::Role;
use prost_types::value::Kind;
use serde_json::{Value, json};

use crate::faults::{Cluster, Instance, sigterm, start_instance, token_for};
use crate::otlp::{ReceivedSpan, Receiver};
use crate::support::fake_providers::{FakeProviders, Fault};

/// Must never appear in a span: the user's id and a marker inside the payload.
const USER: &str = "trace-user-7f3a";
const MARKER: &str = "payload-marker-c41d";

/// OTLP span kinds.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const CONSUMER: i32 = 5;

/// A caller's span: its trace id, its span id and the `traceparent` that names it.
struct Caller {
    trace_id: String,
    span_id: String,
    traceparent: String,
}

impl Caller {
    fn new() -> Self {
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        let traceparent = format!("00-{trace_id}-{span_id}-01");
        Self {
            trace_id,
            span_id,
            traceparent,
        }
    }
}

/// The environment that turns trace export on towards `receiver`.
fn otel_env<'a>(receiver: &'a Receiver, protocol: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
}

/// `POST`s `body` to `path` on `on` with the caller's `traceparent`; the JSON answer.
async fn post(on: &Instance, path: &str, body: Value, traceparent: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", on.base))
        .bearer_auth(token_for(USER, Role::User))
        .header("traceparent", traceparent)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    resp.json().await.unwrap()
}

/// Submits an echo task over gRPC with the caller's `traceparent` in the metadata; its id.
async fn submit_grpc(on: &Instance, traceparent: &str) -> String {
    let mut payload = prost_types::Struct::default();
    payload.fields.insert(
        "note".into(),
        prost_types::Value {
            kind: Some(Kind::StringValue(MARKER.into())),
        },
    );
    let mut request = tonic::Request::new(SubmitTaskRequest {
        r#type: "echo".into(),
        payload: Some(payload),
        ..Default::default()
    });
    let bearer = format!("Bearer {}", token_for(USER, Role::User));
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let mut client = TaskServiceClient::connect(on.base.clone()).await.unwrap();
    client
        .submit_task(request)
        .await
        .unwrap()
        .into_inner()
        .task_id
}

/// Waits until task `id` is completed, as seen on `on`.
async fn wait_completed(on: &Instance, id: &str) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body: Value = http
            .get(format!("{}/api/v1/tasks/{id}", on.base))
            .bearer_auth(token_for(USER, Role::User))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["status"] == "completed" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} not completed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `span`'s chain of parents within `spans` reaches the span `ancestor`.
fn descends_from(spans: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &str) -> bool {
    let by_id: HashMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut at = span;
    for _ in 0..spans.len() {
        if at.parent_id == ancestor {
            return true;
        }
        match by_id.get(at.parent_id.as_str()) {
            Some(parent) => at = parent,
            None => return false,
        }
    }
    false
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The PII rule: no span attribute names the user or quotes the payload.
fn assert_no_pii(spans: &[ReceivedSpan]) {
    for span in spans {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains(USER) && !value.contains(MARKER),
                "{} carries {key}={value}",
                span.name
            );
        }
    }
}

/// Checks one submit's trace: the server span `server_name` is the caller's child, and each of
/// `tasks` has a `task.run` (attempt `attempt`) under it with its echo `provider.attempt`.
/// Returns the task runs by task id.
fn check_trace<'a>(
    spans: &'a [ReceivedSpan],
    caller: &Caller,
    server_name: &str,
    tasks: &[&str],
) -> HashMap<String, &'a ReceivedSpan> {
    let servers = named(spans, server_name);
    assert_eq!(servers.len(), 1, "one server span: {spans:#?}");
    let server = servers[0];
    assert_eq!(server.kind, SERVER);
    assert_eq!(
        server.parent_id, caller.span_id,
        "the submit span continues the caller's span"
    );
    let mut runs = HashMap::new();
    for run in named(spans, "task.run") {
        assert_eq!(run.kind, CONSUMER);
        assert!(
            descends_from(spans, run, &server.span_id),
            "task.run descends from the submit span: {spans:#?}"
        );
        assert_eq!(run.attr("task.type"), Some("echo"));
        assert_eq!(run.attr("queue"), Some("default"));
        let attempts = named(spans, "provider.attempt");
        let attempt = attempts
            .iter()
            .find(|a| a.parent_id == run.span_id)
            .expect("a provider attempt under each task run");
        assert_eq!(attempt.kind, CLIENT);
        assert_eq!(attempt.attr("provider"), Some("echo"));
        assert!(descends_from(spans, attempt, &server.span_id));
        runs.insert(run.attr("task.id").unwrap().to_owned(), run);
    }
    for id in tasks {
        assert!(runs.contains_key(*id), "no task.run for {id}: {spans:#?}");
    }
    for span in spans {
        assert_eq!(
            span.resource.get("service.name").map(String::as_str),
            Some("ai-integration-service"),
            "the default service name"
        );
    }
    assert_no_pii(spans);
    runs
}

/// Embedded mode, OTLP over HTTP/protobuf: a single submit and a batch over HTTP and a submit
/// over gRPC, each continuing its caller's trace through the stored context to the worker's
/// spans, and a routed task whose provider tries (a failing Groq, then Claude) are spans of
/// their own. RUST_LOG=warn (the instance's) does not silence the exported spans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_http_and_grpc_submits_continue_the_callers_trace() {
    let receiver = Receiver::http().await;
    let fake = FakeProviders::start().await;
    fake.push_fault("groq", Fault::status("groq", 500));
    let providers = crate::ai::env(&fake, &["groq", "claude"], &[("RESPONSE_CACHE_TTL", "0")]);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let mut env = otel_env(&receiver, "http/protobuf");
    env.push(("DATA_DIR", &data_dir));
    env.extend(providers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let app = start_instance(&env).await;
    // Probes are not traced (nor were the readiness polls of the start).
    reqwest::get(format!("{}/healthz", app.base)).await.unwrap();

    let single = Caller::new();
    let task = post(
        &app,
        "/api/v1/tasks",
        json!({"type": "echo", "payload": {"note": MARKER}}),
        &single.traceparent,
    )
    .await;
    let single_id = task["task_id"].as_str().unwrap().to_owned();

    let batch = Caller::new();
    let tasks = post(
        &app,
        "/api/v1/tasks/batch",
        json!({"tasks": [
            {"type": "echo", "payload": {"note": MARKER}},
            {"type": "echo", "payload": {"n": 2}},
        ]}),
        &batch.traceparent,
    )
    .await;
    let batch_ids: Vec<String> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_owned())
        .collect();

    let grpc = Caller::new();
    let grpc_id = submit_grpc(&app, &grpc.traceparent).await;

    let routed = Caller::new();
    let text = format!("{MARKER} is a sentence. It is summarized by a provider.");
    let task = post(
        &app,
        "/api/v1/tasks",
        json!({"type": "summarize", "payload": {"text": text}}),
        &routed.traceparent,
    )
    .await;
    let routed_id = task["task_id"].as_str().unwrap().to_owned();

    for id in batch_ids.iter().chain([&single_id, &grpc_id, &routed_id]) {
        wait_completed(&app, id).await;
    }
    let within = Duration::from_secs(15);
    let spans = receiver
        .trace(&single.trace_id, within, |s| {
            named(s, "provider.attempt").len() == 1
        })
        .await;
    let runs = check_trace(&spans, &single, "POST /api/v1/tasks", &[&single_id]);
    let run = runs[&single_id];
    assert_eq!(run.attr("attempt"), Some("1"));
    assert_eq!(run.attr("outcome"), Some("completed"));
    let server = named(&spans, "POST /api/v1/tasks")[0];
    assert_eq!(server.attr("http.route"), Some("/api/v1/tasks"));
    assert_eq!(server.attr("http.request.method"), Some("POST"));
    assert_eq!(server.attr("http.response.status_code"), Some("202"));

    let spans = receiver
        .trace(&batch.trace_id, within, |s| {
            named(s, "provider.attempt").len() == 2
        })
        .await;
    let ids: Vec<&str> = batch_ids.iter().map(String::as_str).collect();
    check_trace(&spans, &batch, "POST /api/v1/tasks/batch", &ids);

    let spans = receiver
        .trace(&grpc.trace_id, within, |s| {
            named(s, "provider.attempt").len() == 1
        })
        .await;
    let name = "ai.integration.v1.TaskService/SubmitTask";
    check_trace(&spans, &grpc, name, &[&grpc_id]);
    let server = named(&spans, name)[0];
    assert_eq!(server.attr("rpc.system"), Some("grpc"));
    assert_eq!(
        server.attr("rpc.service"),
        Some("ai.integration.v1.TaskService")
    );
    assert_eq!(server.attr("rpc.method"), Some("SubmitTask"));
    assert_eq!(server.attr("rpc.grpc.status_code"), Some("0"));

    let spans = receiver
        .trace(&routed.trace_id, within, |s| {
            named(s, "provider.attempt").len() == 2
        })
        .await;
    let run = named(&spans, "task.run")[0];
    let server = named(&spans, "POST /api/v1/tasks")[0];
    assert_eq!(server.parent_id, routed.span_id);
    assert_eq!(run.parent_id, server.span_id);
    let mut tries = named(&spans, "provider.attempt");
    tries.sort_by_key(|t| t.attr("attempt").map(str::to_owned));
    let seen: Vec<_> = tries
        .iter()
        .map(|t| (t.parent_id.as_str(), t.attr("provider"), t.attr("outcome")))
        .collect();
    let run_id = run.span_id.as_str();
    assert_eq!(
        seen,
        [
            (run_id, Some("groq"), Some("retryable")),
            (run_id, Some("claude"), Some("ok")),
        ]
    );
    assert!(tries[1].attr("gen_ai.usage.output_tokens").is_some());
    // Nor does the fake Groq's error text.
    assert_no_pii(&spans);
    assert!(
        spans
            .iter()
            .flat_map(|s| s.attributes.values())
            .all(|v| !v.contains("(fake)")),
        "a provider's error text is in a span: {spans:#?}"
    );

    stop(app).await;
    assert!(
        receiver
            .spans()
            .iter()
            .all(|s| !s.name.contains("healthz") && !s.name.contains("readyz")),
        "probes are not traced"
    );
}

/// SIGTERMs `instance` and waits for it to exit cleanly (its spans flushed).
async fn stop(mut instance: Instance) {
    sigterm(&instance);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = instance.child.try_wait().unwrap() {
            assert!(status.success(), "exit: {status}");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clustered mode, OTLP over gRPC: instance A takes the submit and runs the first attempt,
/// which fails; A stops; instance B, which never saw the request, runs the retry from the
/// database row, and its `task.run` is still a child of A's submit span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustered_retry_on_another_instance_continues_the_submit_trace() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let receiver = Receiver::grpc().await;
    let mut env = otel_env(&receiver, "grpc");
    // Long enough that A is gone before the retry falls due.
    env.push(("RETRY_BASE_DELAY", "4s"));
    let mut env_a = env.clone();
    env_a.push(("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=a"));
    let a = cluster.start(&env_a).await;

    let caller = Caller::new();
    let task = post(
        &a,
        "/api/v1/tasks",
        json!({"type": "echo", "payload": {"note": MARKER, "fail_times": 1}}),
        &caller.traceparent,
    )
    .await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    // A's first attempt fails and is retried later; A stops (flushing its spans) before then.
    receiver
        .trace(&caller.trace_id, Duration::from_secs(10), |s| {
            named(s, "task.run").len() == 1
        })
        .await;
    stop(a).await;

    let mut env_b = env.clone();
    env_b.push(("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=b"));
    // B exports only when it stops: the exit flushes what the batch still holds.
    env_b.push(("OTEL_BSP_SCHEDULE_DELAY", "600000"));
    let b = cluster.start(&env_b).await;
    wait_completed(&b, &id).await;
    stop(b).await;
    let spans = receiver
        .trace(&caller.trace_id, Duration::from_secs(5), |s| {
            named(s, "provider.attempt").len() == 2
        })
        .await;

    let server = named(&spans, "POST /api/v1/tasks")[0];
    assert_eq!(server.parent_id, caller.span_id);
    assert_eq!(server.resource["service.instance.id"], "a");
    let runs = named(&spans, "task.run");
    assert_eq!(runs.len(), 2, "{spans:#?}");
    for run in &runs {
        assert!(descends_from(&spans, run, &server.span_id));
        assert_eq!(run.attr("task.id"), Some(id.as_str()));
        let attempt = named(&spans, "provider.attempt")
            .into_iter()
            .find(|p| p.parent_id == run.span_id)
            .expect("a provider attempt under each run");
        assert_eq!(attempt.trace_id, caller.trace_id);
    }
    let by_attempt = |n: &str| {
        runs.iter()
            .find(|r| r.attr("attempt") == Some(n))
            .unwrap_or_else(|| panic!("no attempt {n}: {spans:#?}"))
    };
    let (first, second) = (by_attempt("1"), by_attempt("2"));
    assert_eq!(first.resource["service.instance.id"], "a");
    assert_eq!(first.attr("outcome"), Some("retried"));
    assert_eq!(second.resource["service.instance.id"], "b");
    assert_eq!(second.attr("outcome"), Some("completed"));
    assert_no_pii(&spans);
    cluster.cleanup().await;
}
