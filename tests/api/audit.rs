//! The audit log: every admin action is recorded (who, what, target, result, request id) in
//! both modes, readable by admins over HTTP and gRPC with filters, refused to users.

use std::time::Duration;

use ai_integration_service::api::proto::ListAuditLogRequest;
use ai_integration_service::api::proto::admin_service_client::AdminServiceClient;
use ai_integration_service::auth::Role;
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("x-request-id", format!("req:{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, id, resp.json().await.unwrap_or(Value::Null))
}

async fn admin_actions_are_recorded(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let admin = app.token_with("ops", Role::Admin, Duration::from_secs(600));
    let user = app.token("alice");
    let post = reqwest::Method::POST;
    let (status, id, _) = call(
        &app,
        post.clone(),
        &admin,
        "/api/v1/admin/queues/default/pause",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        id.as_deref(),
        Some("req:/api/v1/admin/queues/default/pause"),
        "the caller's request id is echoed"
    );
    call(
        &app,
        post.clone(),
        &admin,
        "/api/v1/admin/queues/default/resume",
        None,
    )
    .await;
    // A failed action is recorded with its error; a refused caller is not.
    let (status, _, _) = call(
        &app,
        post.clone(),
        &admin,
        "/api/v1/admin/queues/nope/pause",
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        call(
            &app,
            post.clone(),
            &user,
            "/api/v1/admin/queues/default/pause",
            None
        )
        .await
        .0,
        403
    );
    let (status, _, body) = call(
        &app,
        post.clone(),
        &admin,
        "/api/v1/admin/dead-letters/requeue",
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let put = reqwest::Method::PUT;
    let (status, _, body) = call(
        &app,
        put,
        &admin,
        "/api/v1/admin/budgets/alice",
        Some(json!({"monthly_usd": "5"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let get = reqwest::Method::GET;
    let (status, _, log) = call(&app, get.clone(), &admin, "/api/v1/admin/audit", None).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "set_budget",
            "requeue_dead_letters",
            "pause_queue",
            "resume_queue",
            "pause_queue"
        ],
        "newest first, the refused call absent: {log}"
    );
    let failed = &entries[2];
    assert_eq!(
        (failed["target"].as_str(), failed["result"].as_str()),
        (Some("nope"), Some("error"))
    );
    assert!(
        failed["error"].as_str().unwrap().contains("nope"),
        "{failed}"
    );
    let first = &entries[4];
    assert_eq!(
        (
            first["actor"].as_str(),
            first["target"].as_str(),
            first["result"].as_str()
        ),
        (Some("ops"), Some("default"), Some("ok"))
    );
    assert_eq!(
        first["request_id"],
        "req:/api/v1/admin/queues/default/pause"
    );
    assert_eq!(entries[1]["detail"]["count"], 0);
    assert_eq!(entries[0]["target"], "alice");

    // Filters and pages.
    let (_, _, paused) = call(
        &app,
        get.clone(),
        &admin,
        "/api/v1/admin/audit?action=pause_queue&limit=1",
        None,
    )
    .await;
    assert_eq!(paused["entries"].as_array().unwrap().len(), 1);
    let cursor = paused["next_cursor"].as_str().unwrap().to_owned();
    let (_, _, older) = call(
        &app,
        get.clone(),
        &admin,
        &format!("/api/v1/admin/audit?action=pause_queue&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(older["entries"][0]["target"], "default", "{older}");
    assert_eq!(older["next_cursor"], Value::Null);
    let (status, _, bad) = call(
        &app,
        get.clone(),
        &admin,
        "/api/v1/admin/audit?action=drop_tables",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("drop_tables"),
        "{bad}"
    );
    let (status, _, bad) = call(
        &app,
        get.clone(),
        &admin,
        "/api/v1/admin/audit?from=yesterday",
        None,
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(
        call(&app, get, &user, "/api/v1/admin/audit", None).await.0,
        403
    );

    // gRPC: the same log.
    let mut client = AdminServiceClient::connect(app.base.clone()).await.unwrap();
    let ask = |token: &str, action: &str| {
        let mut r = tonic::Request::new(ListAuditLogRequest {
            action: action.into(),
            ..Default::default()
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    let answer = client
        .list_audit_log(ask(&admin, "resume_queue"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.entries.len(), 1);
    assert_eq!(answer.entries[0].actor, "ops");
    let denied = client.list_audit_log(ask(&user, "")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let bad = client
        .list_audit_log(ask(&admin, "nope"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    app.cleanup().await;
}
both_modes!(admin_actions_are_recorded, admin_actions_are_recorded);
