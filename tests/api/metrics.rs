//! `GET /metrics` (issue 20, first part): a real scrape after real work, checked by
//! Prometheus's own `promtool check metrics`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use ai_integration_service::api::proto::{GetTaskRequest, SubmitTaskRequest};
use tonic::{Code, Request};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};
use crate::notify_support::{echo, next_sse, sse, until_terminal};

/// `promtool check metrics` on `text`: its complaints, or `None` when it is not installed
/// (outside CI; `.ci/run` installs Debian's `prometheus` package).
fn promtool_check(text: &str) -> Option<Result<(), String>> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: promtool not installed");
            return None;
        }
        Err(e) => panic!("promtool is missing (CI installs Debian's prometheus package): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

async fn a_scrape_shows_the_work_and_passes_promtool(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    for _ in 0..3 {
        let (status, task) = app.submit("mia", json!({"type": "echo"})).await;
        assert_eq!(status, 202, "{task}");
        let id = task["task_id"].as_str().unwrap();
        let done = app.wait_terminal("mia", id, Duration::from_secs(10)).await;
        assert_eq!(done["status"], "completed");
    }
    let resp = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    for needle in [
        "ais_tasks_submitted_total{type=\"echo\",queue=\"default\"}",
        "ais_task_outcomes_total{type=\"echo\",queue=\"default\",outcome=\"completed\"}",
        "ais_task_run_seconds_bucket{type=\"echo\",provider=\"echo\",outcome=\"completed\",le=\"0.001\"}",
        "ais_task_wait_seconds_count{type=\"echo\"}",
        "ais_queue_depth{queue=\"default\",level=\"normal\"}",
        "ais_queue_delayed{queue=\"default\"}",
        "ais_worker_pool_size 10",
        "ais_http_requests_total{method=\"POST\",route=\"/api/v1/tasks\",status=\"202\"}",
        "ais_http_requests_total{method=\"GET\",route=\"/api/v1/tasks/{task_id}\",status=\"200\"}",
        "# HELP ais_tasks_submitted_total",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // Bounded labels: no task or user id anywhere.
    assert!(!text.contains("mia"), "a user id leaked into a label");
    if let Some(checked) = promtool_check(&text) {
        checked.unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}"));
    }
    app.cleanup().await;
}
both_modes!(
    a_scrape_shows_the_work_and_passes_promtool,
    a_scrape_shows_the_work_and_passes_promtool
);

async fn provider_tries_are_counted(mode: Mode) {
    let fake = crate::support::fake_providers::FakeProviders::start().await;
    let vars = crate::ai::env(&fake, &["groq"], &[("RESPONSE_CACHE_TTL", "0")]);
    let Some(app) = crate::ai::app(mode, &vars).await else {
        return;
    };
    let task = crate::ai::run(
        &app,
        "noor",
        json!({"type": "summarize", "payload": {"text": "Counted words here."}}),
    )
    .await;
    assert_eq!(task["status"], "completed", "{task}");
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "ais_provider_requests_total{provider=\"groq\",outcome=\"ok\"}",
        "ais_provider_request_duration_seconds_count{provider=\"groq\",outcome=\"ok\"}",
        "ais_provider_tokens_total{provider=\"groq\",direction=\"in\"}",
        "ais_provider_tokens_total{provider=\"groq\",direction=\"out\"}",
        "ais_provider_cost_microdollars_total{provider=\"groq\"}",
        "ais_provider_breaker_state{provider=\"groq\"} 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    if let Some(checked) = promtool_check(&text) {
        checked.unwrap_or_else(|e| panic!("promtool check metrics: {e}"));
    }
    app.cleanup().await;
}
both_modes!(provider_tries_are_counted, provider_tries_are_counted);

async fn scrape(base: &str) -> String {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

fn authed<T>(app: &TestApp, user: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token(user)).parse().unwrap(),
    );
    r
}

/// Timeouts, dead letters, gRPC calls by method and code, event streams and their deliveries,
/// read on a separate `METRICS_PORT`.
async fn every_part_is_counted_on_the_metrics_port(mode: Mode) {
    let Some(app) = spawn_app(
        mode,
        &[("METRICS_PORT", "0"), ("JOB_QUEUE_MAX_RETRIES", "0")],
    )
    .await
    else {
        return;
    };
    let metrics = app.metrics_base.clone().expect("METRICS_PORT bound");
    assert_ne!(metrics, app.base);

    // A live SSE stream sees a task's events.
    let mut stream = sse(&app, "ria", "", None).await;
    assert_eq!(next_sse(&mut stream).await.event, "subscribed");
    let (_, task) = app.submit("ria", echo(0)).await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    assert_eq!(until_terminal(&mut stream, &id).await.len(), 3);

    // An attempt that outlives its timeout, with no retry left: a timeout and a dead letter.
    let (status, slow) = app
        .submit(
            "ria",
            json!({"type": "echo", "payload": {"delay_ms": 1500}, "timeout_seconds": 1}),
        )
        .await;
    assert_eq!(status, 202, "{slow}");
    let slow = app
        .wait_terminal(
            "ria",
            slow["task_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(slow["status"], "failed", "{slow}");

    // gRPC: one call that succeeds, one that is refused.
    let mut grpc = app.grpc().await;
    let request = SubmitTaskRequest {
        r#type: "echo".into(),
        ..Default::default()
    };
    grpc.submit_task(authed(&app, "ria", request))
        .await
        .unwrap();
    let missing = GetTaskRequest {
        task_id: uuid::Uuid::now_v7().to_string(),
    };
    let refused = grpc
        .get_task(authed(&app, "ria", missing))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);

    let text = scrape(&metrics).await;
    for needle in [
        "ais_streams_open{transport=\"sse\"}",
        "ais_events_delivered_total{transport=\"sse\"}",
        "ais_event_delivery_lag_seconds_count{transport=\"sse\"}",
        "ais_task_timeouts_total{type=\"echo\",queue=\"default\"}",
        "ais_task_outcomes_total{type=\"echo\",queue=\"default\",outcome=\"failed\"}",
        "ais_grpc_requests_total{method=\"/ai.integration.v1.TaskService/SubmitTask\",code=\"OK\"}",
        "ais_grpc_requests_total{method=\"/ai.integration.v1.TaskService/GetTask\",code=\"NOT_FOUND\"}",
        "ais_grpc_request_duration_seconds_count{method=\"/ai.integration.v1.TaskService/GetTask\",code=\"NOT_FOUND\"}",
        "ais_cost_month_microdollars",
        "ais_worker_pool_limit",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // Read from this app's store: at least the one dead letter (other tests share the
    // process's recorder, not the store).
    let dead = gauge(&text, "ais_dead_letters");
    assert!(dead >= 1.0, "ais_dead_letters {dead}");
    // gRPC calls are not counted twice as HTTP requests.
    assert!(
        !text.contains("route=\"/ai.integration.v1.TaskService/"),
        "{text}"
    );
    if let Some(checked) = promtool_check(&text) {
        checked.unwrap_or_else(|e| panic!("promtool check metrics: {e}"));
    }
    // The main port serves the same scrape.
    assert!(scrape(&app.base).await.contains("ais_grpc_requests_total"));
    drop(stream);
    app.cleanup().await;
}
both_modes!(
    every_part_is_counted_on_the_metrics_port,
    every_part_is_counted_on_the_metrics_port
);

/// The value of an unlabelled sample.
fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

/// `METRICS_ENABLED=false`: no scrape, and a clear answer saying why.
async fn metrics_can_be_turned_off(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("METRICS_ENABLED", "false")]).await else {
        return;
    };
    let resp = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("METRICS_ENABLED"),
        "{body}"
    );
    app.cleanup().await;
}
both_modes!(metrics_can_be_turned_off, metrics_can_be_turned_off);
