//! `GET /metrics` (issue 20, first part): a real scrape after real work, checked by
//! Prometheus's own `promtool check metrics`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Mode, both_modes, spawn_app};

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
        "ais_queue_depth{queue=\"default\"} 0",
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
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    if let Some(checked) = promtool_check(&text) {
        checked.unwrap_or_else(|e| panic!("promtool check metrics: {e}"));
    }
    app.cleanup().await;
}
both_modes!(provider_tries_are_counted, provider_tries_are_counted);
