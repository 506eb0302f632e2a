//! Named queues end to end: routing by type, fairness under a flood, pause and resume across
//! instances, a rate-limited queue, the admin API and the adaptive pool in the statistics.

use std::time::Duration;

use ai_integration_service::api::proto::admin_service_client::AdminServiceClient;
use ai_integration_service::api::proto::{GetQueueStatsRequest, ListQueuesRequest, QueueRequest};
use ai_integration_service::auth::Role;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tonic::{Code, Request};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app, start};
use crate::support::fake_providers::FakeProviders;

fn admin_token(app: &TestApp) -> String {
    app.token_with("ops", Role::Admin, Duration::from_secs(600))
}

/// `GET` as an admin; returns status and body.
async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(admin_token(app))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `POST` with `token`; returns status and body.
async fn post(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The queue `name` in `GET /api/v1/admin/queues`.
async fn queue_info(app: &TestApp, name: &str) -> Value {
    let (status, body) = admin_get(app, "/api/v1/admin/queues").await;
    assert_eq!(status, 200, "{body}");
    body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no queue {name} in {body}"))
}

/// Submits `body` as alice and returns the task id.
async fn submit(app: &TestApp, body: Value) -> String {
    let (status, task) = app.submit("alice", body).await;
    assert_eq!(status, 202, "{task}");
    task["task_id"].as_str().unwrap().to_owned()
}

fn grpc_request<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn tasks_route_to_their_queue_and_admins_manage_queues(mode: Mode) {
    let vars = [
        ("QUEUES", "default:priority,qe:standard:concurrency=2"),
        ("QUEUE_ROUTE_ECHO", "qe"),
    ];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    let (status, task) = app.submit("alice", json!({"type": "echo"})).await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(task["queue"], "qe");
    let id = task["task_id"].as_str().unwrap();
    let done = app
        .wait_terminal("alice", id, Duration::from_secs(10))
        .await;
    assert_eq!(
        (done["status"].as_str(), done["queue"].as_str()),
        (Some("completed"), Some("qe"))
    );
    // Types without a route go to `default`.
    let (_, other) = app
        .submit(
            "alice",
            json!({"type": "summarize", "payload": {"text": "x"}}),
        )
        .await;
    assert_eq!(other["queue"], "default");

    let (status, body) = admin_get(&app, "/api/v1/admin/queues?window_seconds=600").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window_seconds"], 600);
    let qe = queue_info(&app, "qe").await;
    assert_eq!(qe["type"], "standard");
    assert_eq!(qe["concurrency"], 2);
    assert_eq!(qe["paused"], false);
    assert_eq!(qe["completed_count"], 1, "{qe}");
    assert_eq!(qe["sample_size"], 1, "{qe}");
    assert_eq!(queue_info(&app, "default").await["type"], "priority");
    assert!(body["pool"]["limit"].as_u64().unwrap() >= 1, "{body}");

    // Admin only; unknown queues are 404.
    let user = app.token("alice");
    let admin = admin_token(&app);
    assert_eq!(app.get("alice", "/api/v1/admin/queues").await.0, 403);
    assert_eq!(
        post(&app, &user, "/api/v1/admin/queues/qe/pause").await.0,
        403
    );
    let (status, body) = post(&app, &admin, "/api/v1/admin/queues/nope/pause").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(
        post(&app, &admin, "/api/v1/admin/queues/Bad%20Name/resume")
            .await
            .0,
        404
    );
    let (status, body) = post(&app, &admin, "/api/v1/admin/queues/qe/pause").await;
    assert_eq!((status, &body["paused"]), (200, &json!(true)), "{body}");
    assert_eq!(queue_info(&app, "qe").await["paused"], true);

    // gRPC: the same, with the same codes.
    let mut client = AdminServiceClient::connect(app.base.clone()).await.unwrap();
    let list = client
        .list_queues(grpc_request(
            ListQueuesRequest { window_seconds: 0 },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let qe = list.queues.iter().find(|q| q.name == "qe").unwrap();
    assert_eq!(
        (qe.r#type.as_str(), qe.paused, qe.completed_count),
        ("standard", true, 1)
    );
    assert!(list.pool.unwrap().limit >= 1);
    let name = |n: &str| QueueRequest { name: n.into() };
    let state = client
        .resume_queue(grpc_request(name("qe"), &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(!state.paused);
    assert_eq!(
        client
            .pause_queue(grpc_request(name("nope"), &admin))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        client
            .pause_queue(grpc_request(name("qe"), &user))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        client
            .list_queues(grpc_request(ListQueuesRequest { window_seconds: 0 }, &user))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // A paused queue stays paused across a restart.
    assert_eq!(
        post(&app, &admin, "/api/v1/admin/queues/qe/pause").await.0,
        200
    );
    let app = app.restart().await;
    assert_eq!(queue_info(&app, "qe").await["paused"], true);
    app.cleanup().await;
}
both_modes!(
    tasks_route_to_their_queue_and_admins_manage_queues,
    tasks_route_to_their_queue_and_admins_manage_queues
);

/// A flood of 10,000 slow echo tasks (priority 10) in `qa`, then 5 summarize tasks (priority
/// one) in `qb`: the five complete while the flood is still draining. In one priority queue
/// they would wait behind all 10,000.
async fn a_flood_in_one_queue_does_not_starve_another(mode: Mode) {
    let fake = FakeProviders::start().await;
    let vars = [
        ("QUEUES", "qa:priority,qb:priority"),
        ("QUEUE_ROUTE_ECHO", "qa"),
        ("QUEUE_ROUTE_SUMMARIZE", "qb"),
        ("WORKER_POOL_SIZE", "4"),
        ("MAX_QUEUE_SIZE", "20000"),
        ("MAX_USER_PRIORITY", "10"),
        ("GROQ_API_KEY", &fake.key("groq")),
        ("GROQ_BASE_URL", &fake.base_url("groq")),
    ];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    let token = app.token("alice");
    for _ in 0..10 {
        let tasks: Vec<Value> = (0..1000)
            .map(|_| json!({"type": "echo", "priority": 10, "payload": {"delay_ms": 40}}))
            .collect();
        let resp = app
            .http
            .post(format!("{}/api/v1/tasks/batch", app.base))
            .bearer_auth(&token)
            .json(&json!({ "tasks": tasks }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let mut b = Vec::new();
    for i in 0..5 {
        let text = format!("Article {i}. It says something worth a summary.");
        b.push(
            submit(
                &app,
                json!({"type": "summarize", "priority": 1, "payload": {"text": text}}),
            )
            .await,
        );
    }
    for id in &b {
        let done = app
            .wait_terminal("alice", id, Duration::from_secs(20))
            .await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["queue"], "qb");
    }
    let qa = queue_info(&app, "qa").await;
    assert!(
        qa["pending_count"].as_u64().unwrap() > 5000,
        "the flood should still be draining: {qa}"
    );
    app.cleanup().await;
}
both_modes!(
    a_flood_in_one_queue_does_not_starve_another,
    a_flood_in_one_queue_does_not_starve_another
);

/// Pausing on one instance stops the queue on the other (submits still accepted, tasks stay
/// pending); resuming on the other lets them run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_apply_to_every_instance() {
    let vars = [
        ("QUEUES", "default:priority,qp:standard"),
        ("QUEUE_ROUTE_ECHO", "qp"),
    ];
    let Some(a) = spawn_app(Mode::Clustered, &vars).await else {
        return;
    };
    let mut b = start(a.vars.clone()).await;
    let (status, body) = post(&a, &admin_token(&a), "/api/v1/admin/queues/qp/pause").await;
    assert_eq!(status, 200, "{body}");
    // The other instance reads the flag within its sync interval.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(queue_info(&b, "qp").await["paused"], true);

    let mut ids = Vec::new();
    for app in [&a, &b, &b] {
        ids.push(submit(app, json!({"type": "echo"})).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &ids {
        let (_, t) = b.get("alice", &format!("/api/v1/tasks/{id}")).await;
        assert_eq!(t["status"], "pending", "{t}");
    }
    assert_eq!(queue_info(&a, "qp").await["pending_count"], 3);

    let (status, _) = post(&b, &admin_token(&b), "/api/v1/admin/queues/qp/resume").await;
    assert_eq!(status, 200);
    for id in &ids {
        let done = a.wait_terminal("alice", id, Duration::from_secs(10)).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    // The tasks may all have run on `b`, which resumed at once; `a` reads the flag within its
    // sync interval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while queue_info(&a, "qp").await["paused"] != false {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a still reports qp paused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.stop().await;
    a.cleanup().await;
}

/// A queue limited to 5 starts per second (bursts of 5) starts no faster, on one instance or
/// two (clustered: the limit is counted in Redis).
async fn a_rate_limited_queue_keeps_its_rate(mode: Mode) {
    let vars = [
        ("QUEUES", "default:priority,slow:rate_limited:rate=5/s"),
        ("QUEUE_ROUTE_ECHO", "slow"),
        ("WORKER_POOL_SIZE", "50"),
    ];
    let Some(a) = spawn_app(mode, &vars).await else {
        return;
    };
    let mut b = match mode {
        Mode::Clustered => Some(start(a.vars.clone()).await),
        Mode::Embedded => None,
    };
    let token = a.token("alice");
    let tasks: Vec<Value> = (0..20).map(|_| json!({"type": "echo"})).collect();
    let resp = a
        .http
        .post(format!("{}/api/v1/tasks/batch", a.base))
        .bearer_auth(&token)
        .json(&json!({ "tasks": tasks }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    let mut started: Vec<DateTime<Utc>> = Vec::new();
    for t in body["tasks"].as_array().unwrap() {
        let id = t["task_id"].as_str().unwrap();
        let done = a.wait_terminal("alice", id, Duration::from_secs(15)).await;
        assert_eq!(done["status"], "completed");
        started.push(done["started_at"].as_str().unwrap().parse().unwrap());
    }
    started.sort();
    // GCRA: the i-th start (from 0) comes no earlier than (i - 5 + 1) intervals after the first.
    for (i, at) in started.iter().enumerate().skip(5) {
        let gap = (*at - started[0]).num_milliseconds();
        let floor = (i as i64 - 4) * 200 - 30;
        assert!(
            gap >= floor,
            "start {i} came {gap} ms after the first; at least {floor} ms"
        );
    }
    if let Some(b) = b.as_mut() {
        b.stop().await;
    }
    a.cleanup().await;
}
both_modes!(
    a_rate_limited_queue_keeps_its_rate,
    a_rate_limited_queue_keeps_its_rate
);

/// The pool's current (adaptive) limit is in the statistics, over HTTP and gRPC.
async fn the_adaptive_limit_shows_in_the_stats(mode: Mode) {
    let vars = [("WORKER_POOL_SIZE", "6"), ("WORKER_POOL_MIN", "2")];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    let (status, stats) = admin_get(&app, "/api/v1/admin/queue/stats").await;
    assert_eq!(status, 200, "{stats}");
    let pool = &stats["pool"];
    assert_eq!(
        (pool["min"].as_u64(), pool["max"].as_u64()),
        (Some(2), Some(6)),
        "{stats}"
    );
    assert_eq!(pool["adaptive"], true);
    let limit = pool["limit"].as_u64().unwrap();
    assert!((2..=6).contains(&limit), "{stats}");

    let mut client = AdminServiceClient::connect(app.base.clone()).await.unwrap();
    let s = client
        .get_queue_stats(grpc_request(
            GetQueueStatsRequest { window_seconds: 0 },
            &admin_token(&app),
        ))
        .await
        .unwrap()
        .into_inner();
    let pool = s.pool.unwrap();
    assert!(pool.adaptive && (2..=6).contains(&pool.limit) && pool.max == 6);
    app.cleanup().await;

    // Off: the limit is the pool size.
    let Some(app) = spawn_app(
        mode,
        &[("WORKER_POOL_SIZE", "6"), ("ADAPTIVE_POOL", "false")],
    )
    .await
    else {
        return;
    };
    let (_, stats) = admin_get(&app, "/api/v1/admin/queue/stats").await;
    assert_eq!(stats["pool"]["limit"], 6, "{stats}");
    assert_eq!(stats["pool"]["adaptive"], false);
    app.cleanup().await;
}
both_modes!(
    the_adaptive_limit_shows_in_the_stats,
    the_adaptive_limit_shows_in_the_stats
);
