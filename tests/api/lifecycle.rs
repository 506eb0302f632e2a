//! Retries, failures, backpressure, restart and shutdown.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Mode, both_modes, spawn_app};

async fn flaky_task_is_retried_then_completes(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let (_, t) = app
        .submit(
            "alice",
            json!({"type": "echo", "payload": {"fail_times": 2}}),
        )
        .await;
    let done = app
        .wait_terminal(
            "alice",
            t["task_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["retry_count"], 2);
    // The last failure stays on record.
    assert_eq!(done["error"]["class"], "retryable");
    app.cleanup().await;
}
both_modes!(
    flaky_task_is_retried_then_completes,
    flaky_task_is_retried_then_completes
);

async fn retries_exhausted_fails_with_error(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("JOB_QUEUE_MAX_RETRIES", "2")]).await else {
        return;
    };
    let (_, t) = app
        .submit(
            "alice",
            json!({"type": "echo", "payload": {"fail_times": 5}}),
        )
        .await;
    let done = app
        .wait_terminal(
            "alice",
            t["task_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["retry_count"], 2);
    assert_eq!(done["error"]["provider"], "echo");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("simulated failure 3"),
        "{done}"
    );
    app.cleanup().await;
}
both_modes!(
    retries_exhausted_fails_with_error,
    retries_exhausted_fails_with_error
);

async fn type_without_provider_fails_clearly(mode: Mode) {
    // Without the extraction fallback, summarize needs a provider.
    let Some(app) = spawn_app(mode, &[("AI_FALLBACK_ENABLED", "false")]).await else {
        return;
    };
    let (status, t) = app
        .submit(
            "alice",
            json!({"type": "summarize", "payload": {"text": "hi"}}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(t["priority"], 7, "summarize defaults to HIGH");
    let done = app
        .wait_terminal(
            "alice",
            t["task_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["class"], "non_retryable");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("set GROQ_API_KEY or"),
        "names what would enable one: {message}"
    );
    assert_eq!(
        done["retry_count"], 0,
        "non-retryable errors are not retried"
    );
    app.cleanup().await;
}
both_modes!(
    type_without_provider_fails_clearly,
    type_without_provider_fails_clearly
);

async fn timeout_counts_as_retryable_failure(mode: Mode) {
    let Some(app) = spawn_app(
        mode,
        &[
            ("TASK_TIMEOUT_ECHO", "200ms"),
            ("JOB_QUEUE_MAX_RETRIES", "1"),
        ],
    )
    .await
    else {
        return;
    };
    let (_, t) = app
        .submit(
            "alice",
            json!({"type": "echo", "payload": {"delay_ms": 5000}}),
        )
        .await;
    let done = app
        .wait_terminal(
            "alice",
            t["task_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["retry_count"], 1);
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{done}"
    );
    app.cleanup().await;
}
both_modes!(
    timeout_counts_as_retryable_failure,
    timeout_counts_as_retryable_failure
);

async fn full_queue_answers_429(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("MAX_QUEUE_SIZE", "2"), ("WORKER_POOL_SIZE", "1")]).await
    else {
        return;
    };
    let slow = json!({"type": "echo", "payload": {"delay_ms": 2000}});
    // The first is taken by the single worker; two more fill the queue.
    let (s, first) = app.submit("alice", slow.clone()).await;
    assert_eq!(s, 202);
    let first = first["task_id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.get("alice", &format!("/api/v1/tasks/{first}")).await.1["status"] != "processing" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never took the first task"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The depth check re-measures the queue at most every 50 ms and errs high in between.
    tokio::time::sleep(Duration::from_millis(60)).await;
    for _ in 0..2 {
        let (s, body) = app.submit("alice", slow.clone()).await;
        assert_eq!(s, 202, "{body}");
    }
    let resp = app
        .http
        .post(format!("{}/api/v1/tasks", app.base))
        .bearer_auth(app.token("alice"))
        .json(&slow)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_exhausted");
    let (_, list) = app.get("alice", "/api/v1/tasks").await;
    assert_eq!(
        list["tasks"].as_array().unwrap().len(),
        3,
        "the refused task was not stored"
    );
    app.cleanup().await;
}
both_modes!(full_queue_answers_429, full_queue_answers_429);

async fn pending_tasks_survive_a_restart(mode: Mode) {
    let Some(app) = spawn_app(
        mode,
        &[("WORKER_POOL_SIZE", "1"), ("SHUTDOWN_GRACE_PERIOD", "5s")],
    )
    .await
    else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, t) = app
            .submit(
                "alice",
                json!({"type": "echo", "payload": {"i": i, "delay_ms": 300}}),
            )
            .await;
        ids.push(t["task_id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The running task finishes within the grace period; the rest wait in the database.
    let app = app.restart().await;
    for id in &ids {
        let done = app
            .wait_terminal("alice", id, Duration::from_secs(15))
            .await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    app.cleanup().await;
}
both_modes!(
    pending_tasks_survive_a_restart,
    pending_tasks_survive_a_restart
);

async fn shutdown_is_prompt_when_idle(mode: Mode) {
    let Some(mut app) = spawn_app(mode, &[]).await else {
        return;
    };
    let took = app.stop().await;
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    app.cleanup().await;
}
both_modes!(shutdown_is_prompt_when_idle, shutdown_is_prompt_when_idle);

/// The queue is an index: wipe it (as a Redis FLUSHALL or restart without persistence would)
/// and the reconciler rebuilds it from the database; every task still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_queue_is_rebuilt_from_the_database() {
    let vars = [("WORKER_POOL_SIZE", "1"), ("RECONCILE_INTERVAL", "500ms")];
    let Some(app) = spawn_app(Mode::Clustered, &vars).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, t) = app
            .submit(
                "alice",
                json!({"type": "echo", "payload": {"i": i, "delay_ms": 200}}),
            )
            .await;
        ids.push(t["task_id"].as_str().unwrap().to_owned());
    }
    let (url, prefix) = app.redis().unwrap();
    crate::support::cleanup_redis_prefix(&url, &prefix).await;
    for id in &ids {
        let done = app
            .wait_terminal("alice", id, Duration::from_secs(20))
            .await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    app.cleanup().await;
}

async fn per_user_submit_rate_and_active_cap(mode: Mode) {
    let vars = [
        ("USER_SUBMIT_RATE", "3/min"),
        ("MAX_ACTIVE_TASKS_PER_USER", "2"),
        ("WORKER_POOL_SIZE", "4"),
    ];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    let slow = json!({"type": "echo", "payload": {"delay_ms": 1500}});
    for _ in 0..2 {
        let (s, body) = app.submit("alice", slow.clone()).await;
        assert_eq!(s, 202, "{body}");
    }
    // Within the rate, over the active cap.
    let (s, body) = app.submit("alice", slow.clone()).await;
    assert_eq!(s, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("active tasks"),
        "{body}"
    );
    // Over the rate (burst of 3 spent): refused before the cap is even looked at.
    let resp = app
        .http
        .post(format!("{}/api/v1/tasks", app.base))
        .bearer_auth(app.token("alice"))
        .json(&json!({"type": "echo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate limit"),
        "{body}"
    );
    // Another user is not affected.
    let (s, _) = app.submit("bob", json!({"type": "echo"})).await;
    assert_eq!(s, 202);
    let (_, list) = app.get("alice", "/api/v1/tasks").await;
    assert_eq!(
        list["tasks"].as_array().unwrap().len(),
        2,
        "refused submits stored nothing"
    );
    app.cleanup().await;
}
both_modes!(
    per_user_submit_rate_and_active_cap,
    per_user_submit_rate_and_active_cap
);

async fn timeouts_per_type_and_per_request(mode: Mode) {
    let vars = [
        ("TASK_TIMEOUT_ECHO", "300ms"),
        ("MAX_TASK_TIMEOUT", "60s"),
        ("JOB_QUEUE_MAX_RETRIES", "0"),
    ];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    // The type's timeout applies...
    let (_, t) = app
        .submit(
            "alice",
            json!({"type": "echo", "payload": {"delay_ms": 2000}}),
        )
        .await;
    assert_eq!(t["timeout_ms"], 300);
    let done = app
        .wait_terminal(
            "alice",
            t["task_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 300ms"),
        "{done}"
    );
    // ...unless the request sets its own.
    let (_, t) = app
        .submit(
            "alice",
            json!({"type": "echo", "payload": {"delay_ms": 500}, "timeout_seconds": 5}),
        )
        .await;
    assert_eq!(t["timeout_ms"], 5000);
    let done = app
        .wait_terminal(
            "alice",
            t["task_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    // Bounded.
    for bad in [0, 61] {
        let (s, body) = app
            .submit("alice", json!({"type": "echo", "timeout_seconds": bad}))
            .await;
        assert_eq!(s, 400, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("timeout_seconds"),
            "{body}"
        );
    }
    app.cleanup().await;
}
both_modes!(
    timeouts_per_type_and_per_request,
    timeouts_per_type_and_per_request
);

async fn retries_wait_the_documented_backoff(mode: Mode) {
    // Base 1 s: retries after 1 s and 2 s (each + up to 10% jitter). A scheduler that only
    // looked once a second would add up to 2 s more.
    let Some(app) = spawn_app(mode, &[("RETRY_BASE_DELAY", "1s")]).await else {
        return;
    };
    let (_, t) = app
        .submit(
            "alice",
            json!({"type": "echo", "payload": {"fail_times": 2}}),
        )
        .await;
    let done = app
        .wait_terminal(
            "alice",
            t["task_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let at = |f: &str| chrono::DateTime::parse_from_rfc3339(done[f].as_str().unwrap()).unwrap();
    let took = (at("completed_at") - at("created_at")).num_milliseconds();
    assert!(
        (3000..4300).contains(&took),
        "two backoffs of 1 s + 2 s took {took} ms in all"
    );
    assert_eq!(
        (done["retry_count"].as_u64(), done["attempts"].as_u64()),
        (Some(2), Some(3))
    );
    app.cleanup().await;
}
both_modes!(
    retries_wait_the_documented_backoff,
    retries_wait_the_documented_backoff
);
