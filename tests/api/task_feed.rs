//! The task feed: tasks finished here reach the event store as `TaskFinished` events and the
//! task statistics of their owner (`GET /api/v1/progress/me/tasks`), in both modes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};

/// The owner's task statistics once `done` holds (within 15 s).
async fn stats_when(app: &TestApp, user: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let token = app.token(user);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body: Value = app
            .http
            .get(format!("{}/api/v1/progress/me/tasks", app.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let days = body["days"].as_array().cloned().unwrap_or_default();
        if done(&days) {
            return days;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn finished_tasks_reach_the_task_statistics(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("JOB_QUEUE_MAX_RETRIES", "1")]).await else {
        return;
    };
    let mut ids = Vec::new();
    for payload in [
        json!({"n": 1}),
        json!({"n": 2}),
        json!({"fail_times": 1}),
        json!({"fail_times": 5}),
    ] {
        let (status, t) = app
            .submit("fern", json!({"type": "echo", "payload": payload}))
            .await;
        assert_eq!(status, 202, "{t}");
        ids.push(t["task_id"].as_str().unwrap().to_owned());
    }
    app.submit("gus", json!({"type": "echo", "payload": {}}))
        .await;
    for id in &ids {
        app.wait_terminal("fern", id, Duration::from_secs(15)).await;
    }

    let row = |days: &[Value], outcome: &str| {
        days.iter()
            .find(|d| d["task_type"] == "echo" && d["outcome"] == outcome)
            .cloned()
    };
    let days = stats_when(&app, "fern", |d| {
        row(d, "completed").is_some_and(|r| r["tasks"] == 3) && row(d, "failed").is_some()
    })
    .await;
    assert_eq!(days.len(), 2, "fern's rows only, one per outcome: {days:?}");
    let completed = row(&days, "completed").unwrap();
    // Two tasks of one attempt, one of two.
    assert_eq!(completed["attempts"], 4, "{completed}");
    let failed = row(&days, "failed").unwrap();
    assert_eq!(
        (failed["tasks"].as_u64(), failed["attempts"].as_u64()),
        (Some(1), Some(2))
    );

    // The events themselves: in the day's `tasks-…` stream, owner in the metadata.
    let svc = app.token_with(
        "ingest",
        ai_integration_service::auth::Role::Service,
        Duration::from_secs(60),
    );
    let typed: Value = app
        .http
        .get(format!("{}/api/v1/eventstore/types/TaskFinished", app.base))
        .bearer_auth(&svc)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = typed["events"].as_array().unwrap();
    let fern: Vec<&Value> = events
        .iter()
        .filter(|e| e["metadata"]["user_id"] == "fern")
        .collect();
    assert_eq!(fern.len(), 4, "one event per finished task: {typed}");
    assert!(
        fern.iter()
            .all(|e| e["stream_id"].as_str().unwrap().starts_with("tasks-")),
        "{typed}"
    );
    app.cleanup().await;
}
both_modes!(
    finished_tasks_reach_the_task_statistics,
    finished_tasks_reach_the_task_statistics
);
