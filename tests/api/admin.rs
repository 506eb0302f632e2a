//! The admin API: queue statistics, admin-only.

use std::time::Duration;

use ai_integration_service::api::proto::GetQueueStatsRequest;
use ai_integration_service::api::proto::admin_service_client::AdminServiceClient;
use ai_integration_service::auth::Role;
use serde_json::{Value, json};
use tonic::{Code, Request};

use crate::helpers::{Mode, both_modes, spawn_app};

async fn queue_stats_count_tasks_by_status(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("JOB_QUEUE_MAX_RETRIES", "0")]).await else {
        return;
    };
    let mut ids = Vec::new();
    for body in [
        json!({"type": "echo", "payload": {"delay_ms": 20}}),
        json!({"type": "echo"}),
        json!({"type": "echo", "payload": {"fail_times": 1}}),
    ] {
        let (_, t) = app.submit("alice", body).await;
        ids.push(t["task_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.wait_terminal("alice", id, Duration::from_secs(10))
            .await;
    }
    let admin = app.token_with("root", Role::Admin, Duration::from_secs(60));
    let resp = app
        .http
        .get(format!(
            "{}/api/v1/admin/queue/stats?window_seconds=600",
            app.base
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stats: Value = resp.json().await.unwrap();
    assert_eq!(stats["completed_count"], 2, "{stats}");
    assert_eq!(stats["failed_count"], 1, "{stats}");
    assert_eq!(stats["pending_count"], 0);
    assert_eq!(stats["processing_count"], 0);
    assert_eq!(stats["queue_depth"], 0);
    assert_eq!(stats["sample_size"], 3);
    assert_eq!(stats["window_seconds"], 600);
    assert!(
        stats["average_processing_time_ms"].as_u64().unwrap() >= 20 / 3,
        "{stats}"
    );

    // Users may not.
    let (status, body) = app.get("alice", "/api/v1/admin/queue/stats").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "permission_denied");

    // gRPC, same numbers, same rule.
    let mut client = AdminServiceClient::connect(app.base.clone()).await.unwrap();
    let mut req = Request::new(GetQueueStatsRequest { window_seconds: 0 });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {admin}").parse().unwrap());
    let s = client.get_queue_stats(req).await.unwrap().into_inner();
    assert_eq!(
        (s.completed_count, s.failed_count, s.window_seconds),
        (2, 1, 3600)
    );
    let mut req = Request::new(GetQueueStatsRequest { window_seconds: 0 });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token("alice")).parse().unwrap(),
    );
    assert_eq!(
        client.get_queue_stats(req).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let mut req = Request::new(GetQueueStatsRequest { window_seconds: -5 });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {admin}").parse().unwrap());
    assert_eq!(
        client.get_queue_stats(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    app.cleanup().await;
}
both_modes!(
    queue_stats_count_tasks_by_status,
    queue_stats_count_tasks_by_status
);

async fn dead_letters_list_requeue_purge(mode: Mode) {
    let vars = [
        ("JOB_QUEUE_MAX_RETRIES", "1"),
        ("TASK_TIMEOUT_ECHO", "200ms"),
        // Without a provider, summarize would answer by extraction; here it must fail.
        ("AI_FALLBACK_ENABLED", "false"),
    ];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    let admin = app.token_with("root", Role::Admin, Duration::from_secs(600));
    let mut ids = Vec::new();
    for body in [
        json!({"type": "echo", "payload": {"fail_times": 2}}),
        json!({"type": "summarize", "payload": {"text": "x"}}),
        json!({"type": "echo", "payload": {"delay_ms": 600}}),
    ] {
        let (_, t) = app.submit("alice", body).await;
        ids.push(t["task_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let done = app
            .wait_terminal("alice", id, Duration::from_secs(10))
            .await;
        assert_eq!(done["status"], "failed", "{done}");
    }
    let list = |query: &'static str| {
        let (http, base, admin) = (app.http.clone(), app.base.clone(), admin.clone());
        async move {
            let resp = http
                .get(format!("{base}/api/v1/admin/dead-letters{query}"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let all = list("").await;
    let letters = all["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 3, "{all}");
    let flaky = letters
        .iter()
        .find(|d| d["task_id"] == ids[0].as_str())
        .unwrap();
    let history: Vec<&str> = flaky["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["type"].as_str().unwrap())
        .collect();
    assert_eq!(history, vec!["TaskRetrying", "TaskFailed"], "{flaky}");
    assert!(
        flaky["history"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("simulated failure 1")
    );
    let policy = list("?error_class=non_retryable").await;
    assert_eq!(policy["dead_letters"].as_array().unwrap().len(), 1);
    assert_eq!(policy["dead_letters"][0]["task_id"], ids[1].as_str());
    assert_eq!(
        list("?type=summarize").await["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let post = |path: &'static str, token: String, body: Value| {
        let (http, base) = (app.http.clone(), app.base.clone());
        async move {
            let resp = http
                .post(format!("{base}/api/v1/admin/dead-letters/{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(
        post("requeue", app.token("alice"), json!({"all": true}))
            .await
            .0,
        403
    );
    assert_eq!(
        post("requeue", admin.clone(), json!({})).await.0,
        400,
        "an empty selection is refused"
    );

    // The flaky task failed twice; its third attempt, after a requeue, succeeds.
    let (s, body) = post("requeue", admin.clone(), json!({"task_ids": [ids[0]]})).await;
    assert_eq!((s, body["requeued"].as_u64()), (200, Some(1)), "{body}");
    let done = app
        .wait_terminal("alice", &ids[0], Duration::from_secs(10))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["retry_count"], 0, "retries reset");
    assert_eq!(done["attempts"], 3, "history kept");

    let (s, body) = post(
        "purge",
        admin.clone(),
        json!({"error_class": "non_retryable"}),
    )
    .await;
    assert_eq!((s, body["purged"].as_u64()), (200, Some(1)), "{body}");
    let (status, _) = app.get("alice", &format!("/api/v1/tasks/{}", ids[1])).await;
    assert_eq!(status, 404, "purged");
    let rest = app
        .http
        .get(format!("{}/api/v1/admin/dead-letters", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let left: Vec<&str> = rest["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec![ids[2].as_str()]);

    // gRPC: same view and rules.
    let mut client = AdminServiceClient::connect(app.base.clone()).await.unwrap();
    let mut req =
        Request::new(ai_integration_service::api::proto::ListDeadLettersRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {admin}").parse().unwrap());
    let page = client.list_dead_letters(req).await.unwrap().into_inner();
    assert_eq!(page.dead_letters.len(), 1);
    assert_eq!(page.dead_letters[0].history.len(), 2);
    let mut req = Request::new(ai_integration_service::api::proto::DeadLetterSelection {
        all: true,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {admin}").parse().unwrap());
    assert_eq!(
        client
            .purge_dead_letters(req)
            .await
            .unwrap()
            .into_inner()
            .count,
        1
    );
    app.cleanup().await;
}
both_modes!(
    dead_letters_list_requeue_purge,
    dead_letters_list_requeue_purge
);
