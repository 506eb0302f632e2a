//! The HTTP/JSON API.

use std::time::Duration;

use ai_integration_service::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Mode, both_modes, spawn_app};

async fn submit_and_complete(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let (status, task) = app
        .submit(
            "alice",
            json!({"type": "echo", "payload": {"hello": "world"}}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    // Pending, or already processing when an idle worker of the instance took it at once.
    assert!(
        task["status"] == "pending" || task["status"] == "processing",
        "{task}"
    );
    assert_eq!(task["type"], "echo");
    assert_eq!(task["priority"], 5);
    let id = task["task_id"].as_str().unwrap().to_owned();

    let done = app
        .wait_terminal("alice", &id, Duration::from_secs(10))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"], json!({"hello": "world"}));
    assert_eq!(done["progress"], 100);
    assert_eq!(done["retry_count"], 0);
    for field in ["created_at", "started_at", "completed_at"] {
        assert!(done[field].is_string(), "{field} missing: {done}");
    }
    app.cleanup().await;
}
both_modes!(submit_and_complete, submit_and_complete);

/// With an idle pool and nothing queued, a submit starts its task at once (worker/dispatch.rs):
/// the answer already says `processing`, and the task completes as any other.
async fn an_idle_instance_starts_a_task_at_once(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    // The pool learns that the queue is empty from a pop that comes back short.
    let (_, first) = app.submit("alice", json!({"type": "echo"})).await;
    let first = first["task_id"].as_str().unwrap().to_owned();
    app.wait_terminal("alice", &first, Duration::from_secs(10))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let task = loop {
        let (status, task) = app
            .submit("alice", json!({"type": "echo", "payload": {"n": 2}}))
            .await;
        assert_eq!(status, 202, "{task}");
        if task["status"] == "processing" || std::time::Instant::now() > deadline {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(task["status"], "processing", "{task}");
    assert!(task["started_at"].is_string(), "{task}");
    let id = task["task_id"].as_str().unwrap().to_owned();
    let done = app
        .wait_terminal("alice", &id, Duration::from_secs(10))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"], json!({"n": 2}));
    assert_eq!(done["started_at"], task["started_at"], "started once");
    app.cleanup().await;
}
both_modes!(
    an_idle_instance_starts_a_task_at_once,
    an_idle_instance_starts_a_task_at_once
);

/// `DIRECT_DISPATCH=false` sends every task through the queue: the answer says `pending`.
async fn without_direct_dispatch_tasks_are_queued(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("DIRECT_DISPATCH", "false")]).await else {
        return;
    };
    for n in 0..3 {
        let (status, task) = app
            .submit("alice", json!({"type": "echo", "payload": {"n": n}}))
            .await;
        assert_eq!(status, 202, "{task}");
        assert_eq!(task["status"], "pending", "{task}");
        let id = task["task_id"].as_str().unwrap().to_owned();
        let done = app
            .wait_terminal("alice", &id, Duration::from_secs(10))
            .await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    app.cleanup().await;
}
both_modes!(
    without_direct_dispatch_tasks_are_queued,
    without_direct_dispatch_tasks_are_queued
);

async fn batch_keeps_request_order(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("MAX_USER_PRIORITY", "10")]).await else {
        return;
    };
    let tasks: Vec<Value> = (0..50)
        .map(|i| json!({"type": "echo", "payload": {"i": i}, "priority": 1 + i % 10}))
        .collect();
    let resp = app
        .http
        .post(format!("{}/api/v1/tasks/batch", app.base))
        .bearer_auth(app.token("alice"))
        .json(&json!({ "tasks": tasks }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    let out = body["tasks"].as_array().unwrap();
    assert_eq!(out.len(), 50);
    for (i, t) in out.iter().enumerate() {
        let done = app
            .wait_terminal(
                "alice",
                t["task_id"].as_str().unwrap(),
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(done["result"], json!({"i": i}), "task {i} out of order");
        assert_eq!(done["priority"], 1 + i % 10);
    }

    // Over the limit: refused whole.
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"type": "echo"})).collect();
    let resp = app
        .http
        .post(format!("{}/api/v1/tasks/batch", app.base))
        .bearer_auth(app.token("bob"))
        .json(&json!({ "tasks": too_many }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (_, list) = app.get("bob", "/api/v1/tasks").await;
    assert_eq!(list["tasks"].as_array().unwrap().len(), 0, "nothing stored");
    app.cleanup().await;
}
both_modes!(batch_keeps_request_order, batch_keeps_request_order);

async fn users_see_only_their_own_tasks(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let (_, a) = app.submit("alice", json!({"type": "echo"})).await;
    let (_, b) = app.submit("bob", json!({"type": "echo"})).await;
    let a_id = a["task_id"].as_str().unwrap();

    let (status, body) = app.get("bob", &format!("/api/v1/tasks/{a_id}")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let resp = app
        .http
        .post(format!("{}/api/v1/tasks/{a_id}/cancel", app.base))
        .bearer_auth(app.token("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let (_, list) = app.get("bob", "/api/v1/tasks").await;
    let ids: Vec<&str> = list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b["task_id"].as_str().unwrap()]);

    let admin = app.token_with("root", Role::Admin, Duration::from_secs(60));
    let resp = app
        .http
        .get(format!("{}/api/v1/tasks/{a_id}", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "admins see everyone's tasks");
    let all: Value = app
        .http
        .get(format!("{}/api/v1/tasks", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["tasks"].as_array().unwrap().len(), 2);
    app.cleanup().await;
}
both_modes!(
    users_see_only_their_own_tasks,
    users_see_only_their_own_tasks
);

async fn list_pages_and_filters(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let mut submitted = Vec::new();
    for i in 0..7 {
        let (_, t) = app
            .submit("carol", json!({"type": "echo", "payload": {"i": i}}))
            .await;
        submitted.push(t["task_id"].as_str().unwrap().to_owned());
    }
    for id in &submitted {
        app.wait_terminal("carol", id, Duration::from_secs(10))
            .await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (status, page) = app
            .get(
                "carol",
                &format!("/api/v1/tasks?page_size=3&page_token={token}"),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for t in page["tasks"].as_array().unwrap() {
            seen.push(t["task_id"].as_str().unwrap().to_owned());
        }
        match page["next_page_token"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
    }
    submitted.reverse();
    assert_eq!(seen, submitted, "newest first, no gap, no duplicate");

    let (_, page) = app
        .get("carol", "/api/v1/tasks?status=completed&type=echo")
        .await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 7);
    let (_, page) = app.get("carol", "/api/v1/tasks?status=failed").await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 0);
    let (status, body) = app.get("carol", "/api/v1/tasks?status=done").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app.get("carol", "/api/v1/tasks?page_token=bogus").await;
    assert_eq!(status, 400);
    app.cleanup().await;
}
both_modes!(list_pages_and_filters, list_pages_and_filters);

async fn idempotency_key_returns_the_first_task(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let body = json!({"type": "echo", "payload": {"n": 1}, "idempotency_key": "order-42"});
    let (s1, first) = app.submit("dave", body.clone()).await;
    let (s2, second) = app
        .submit(
            "dave",
            json!({"type": "echo", "payload": {"n": 2}, "idempotency_key": "order-42"}),
        )
        .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["task_id"], second["task_id"]);
    let (_, other_user) = app.submit("erin", body).await;
    assert_ne!(other_user["task_id"], first["task_id"], "keys are per user");

    // Concurrent duplicates: still one task.
    let calls =
        (0..20).map(|_| app.submit("frank", json!({"type": "echo", "idempotency_key": "k"})));
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::HashSet<_> = results
        .iter()
        .map(|(s, t)| {
            assert_eq!(*s, 202, "{t}");
            t["task_id"].clone()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let (_, list) = app.get("frank", "/api/v1/tasks").await;
    assert_eq!(list["tasks"].as_array().unwrap().len(), 1);
    app.cleanup().await;
}
both_modes!(
    idempotency_key_returns_the_first_task,
    idempotency_key_returns_the_first_task
);

async fn health_and_readiness(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    for path in ["/healthz", "/readyz"] {
        let resp = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    app.cleanup().await;
}
both_modes!(health_and_readiness, health_and_readiness);
