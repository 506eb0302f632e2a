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
