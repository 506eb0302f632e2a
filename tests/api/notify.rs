//! Live notifications over SSE, WebSocket and gRPC: order, resume, isolation, limits.

use std::time::Duration;

use ai_integration_service::api::proto::notification::Kind;
use ai_integration_service::api::proto::notification_service_client::NotificationServiceClient;
use ai_integration_service::api::proto::{
    Notification, SubmitTaskRequest, SubscribeRequest, WatchTaskRequest,
};
use ai_integration_service::auth::Role;
use ai_integration_service::store::{PgTaskStore, SqliteTaskStore, TaskStore};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Request};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app, start};
use crate::notify_support::*;

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn submit(app: &TestApp, user: &str, body: Value) -> String {
    let (status, task) = app.submit(user, body).await;
    assert_eq!(status, 202, "{task}");
    task["task_id"].as_str().unwrap().to_owned()
}

/// A second instance on the same database and Redis (clustered) or none (embedded).
async fn second_instance(app: &TestApp, mode: Mode) -> Option<TestApp> {
    (mode == Mode::Clustered).then_some(start(app.vars.clone()).await)
}

// ------------------------------------------------------------------------------------------

async fn sse_streams_every_event_in_order_and_resumes(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let mut s = sse(&app, "alice", "", None).await;
    let first = next_sse(&mut s).await;
    assert_eq!(first.event, "subscribed");
    assert_eq!(
        serde_json::from_str::<Value>(&first.data).unwrap(),
        json!({"type": "subscribed", "recovered": true, "id": 0})
    );
    let id = submit(&app, "alice", echo(0)).await;
    let events = until_terminal(&mut s, &id).await;
    assert_eq!(
        types(&events),
        ["TaskCreated", "TaskStarted", "TaskCompleted"]
    );
    assert_eq!(ids(&events), [1, 2, 3]);
    assert!(
        events
            .iter()
            .all(|e| e["task_id"] == id && e["user_id"] == "alice")
    );
    assert_eq!(events[2]["data"]["status"], "completed");
    assert!(events[0]["created_at"].is_string());
    drop(s);

    // Resume with `since`, with Last-Event-ID (which wins), and a task's whole history.
    let mut s = sse(&app, "alice", "since=1", None).await;
    assert_eq!(
        ids(&[next_task_event(&mut s).await, next_task_event(&mut s).await]),
        [2, 3]
    );
    let mut s = sse(&app, "alice", "since=0", Some(2)).await;
    assert_eq!(next_task_event(&mut s).await["id"], 3);
    let mut s = sse(&app, "alice", &format!("task_id={id}"), None).await;
    assert_eq!(ids(&until_terminal(&mut s, &id).await), [1, 2, 3]);

    // The browser way: the token as a query parameter.
    let resp = app
        .http
        .get(format!(
            "{}/api/v1/events?since=2&access_token={}",
            app.base,
            app.token("alice")
        ))
        .send()
        .await
        .unwrap();
    let mut s = sse_events(resp);
    assert_eq!(next_task_event(&mut s).await["id"], 3);

    // Bad input: clear errors.
    let t = app.token("alice");
    assert_eq!(
        sse_response(&app, &t, "since=abc", None).await.status(),
        400
    );
    assert_eq!(
        sse_response(&app, &t, "task_id=nope", None).await.status(),
        400
    );
    let unknown = format!("task_id={}", uuid::Uuid::now_v7());
    assert_eq!(sse_response(&app, &t, &unknown, None).await.status(), 404);
    let resp = app
        .http
        .get(format!("{}/api/v1/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    app.cleanup().await;
}

both_modes!(
    sse_streams_every_event_in_order_and_resumes,
    sse_streams_every_event_in_order_and_resumes
);

async fn websocket_auth_options_and_frames(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let token = app.token("alice");
    let header = ws_with(&app, "", &[("authorization", format!("Bearer {token}"))]).await;
    let query = ws(&app, "alice", "").await;
    let protocol = ws_with(
        &app,
        "",
        &[("sec-websocket-protocol", format!("ais.v1, bearer.{token}"))],
    )
    .await;
    let mut frame_auth = ws_with(&app, "", &[]).await;
    send_text(
        &mut frame_auth,
        json!({"type": "auth", "token": token}).to_string(),
    )
    .await;
    let mut sockets = vec![header, query, protocol, frame_auth];
    for ws in &mut sockets {
        assert_eq!(
            next_frame(ws).await,
            json!({"type": "subscribed", "recovered": true, "id": 0})
        );
    }
    let id = submit(&app, "alice", echo(0)).await;
    for ws in &mut sockets {
        let events = ws_until_terminal(ws, &id).await;
        assert_eq!(
            types(&events),
            ["TaskCreated", "TaskStarted", "TaskCompleted"]
        );
        assert_eq!(ids(&events), [1, 2, 3]);
    }
    // Resume with `since`.
    let mut again = ws(&app, "alice", "since=1").await;
    next_frame(&mut again).await;
    assert_eq!(ids(&ws_until_terminal(&mut again, &id).await), [2, 3]);

    // A bad token is refused at the handshake; a bad auth frame closes with 1008.
    let refused = tokio_tungstenite::connect_async(ws_url(&app, "access_token=forged")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let mut no_auth = ws_with(&app, "", &[]).await;
    send_text(&mut no_auth, "{\"type\":\"hello\"}".into()).await;
    let (code, reason) = close_of(&mut no_auth).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("unauthenticated"), "{reason}");

    // Clients only send small frames; one over 64 KiB closes the socket with 1009.
    let mut big = ws(&app, "alice", "").await;
    next_frame(&mut big).await;
    send_text(&mut big, "x".repeat(100 * 1024)).await;
    let (code, reason) = close_of(&mut big).await;
    assert_eq!(code, 1009, "{reason}");
    app.cleanup().await;
}

both_modes!(
    websocket_auth_options_and_frames,
    websocket_auth_options_and_frames
);

async fn grpc_watch_task_and_subscribe(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let token = app.token("alice");
    let mut notes = NotificationServiceClient::connect(app.base.clone())
        .await
        .unwrap();
    let mut sub = notes
        .subscribe(authed(&token, SubscribeRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let first = sub.next().await.unwrap().unwrap();
    assert!(matches!(
        first.kind,
        Some(Kind::Subscribed(s)) if s.recovered && s.last_id == 0
    ));
    let mut tasks = app.grpc().await;
    let task = tasks
        .submit_task(authed(
            &token,
            SubmitTaskRequest {
                r#type: "echo".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    // WatchTask replays the task from its first event and ends after the terminal one.
    let watch = tasks
        .watch_task(authed(
            &token,
            WatchTaskRequest {
                task_id: task.task_id.clone(),
                since: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let all: Vec<Notification> = tokio::time::timeout(WAIT, watch.map(|m| m.unwrap()).collect())
        .await
        .expect("WatchTask ends after the terminal event");
    let kinds: Vec<String> = all
        .iter()
        .filter_map(|n| match &n.kind {
            Some(Kind::Event(e)) => Some(e.r#type.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["TaskCreated", "TaskStarted", "TaskCompleted"]);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let n = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(Kind::Event(e)) = n.kind {
            assert_eq!(e.task_id, task.task_id);
            assert_eq!(e.user_id, "alice");
            seen.push(e.id);
        }
    }
    assert_eq!(seen, [1, 2, 3]);
    // Someone else's task is not found; a bad id is invalid.
    let status = tasks
        .watch_task(authed(
            &app.token("bob"),
            WatchTaskRequest {
                task_id: task.task_id.clone(),
                since: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = tasks
        .watch_task(authed(
            &token,
            WatchTaskRequest {
                task_id: "x".into(),
                since: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    app.cleanup().await;
}

both_modes!(grpc_watch_task_and_subscribe, grpc_watch_task_and_subscribe);

/// Two producers (one per instance in clustered mode) submit concurrently while a client reads,
/// disconnects, and resumes on the other instance: every id exactly once, in order.
async fn resume_has_no_gap_or_duplicate_under_concurrent_producers(mode: Mode) {
    let Some(a) = spawn_app(mode, &[("WORKER_POOL_SIZE", "4")]).await else {
        return;
    };
    let b = second_instance(&a, mode).await;
    const PER_PRODUCER: usize = 25;
    let total = (2 * PER_PRODUCER * 3) as u64;
    let producers: Vec<_> = [&a, b.as_ref().unwrap_or(&a)]
        .into_iter()
        .map(|app| {
            let (base, token) = (app.base.clone(), app.token("alice"));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0..PER_PRODUCER {
                    let resp = http
                        .post(format!("{base}/api/v1/tasks"))
                        .bearer_auth(&token)
                        .json(&echo((i % 3) as u64 * 5))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 202);
                }
            })
        })
        .collect();
    let instances = [&a, b.as_ref().unwrap_or(&a)];
    let mut last = 0u64;
    let mut seen = Vec::new();
    let mut hop = 0;
    while last < total {
        let app = instances[hop % 2];
        // Alternate between `since` and Last-Event-ID.
        let mut s = if hop % 2 == 0 {
            sse(app, "alice", &format!("since={last}"), None).await
        } else {
            sse(app, "alice", "", Some(last)).await
        };
        hop += 1;
        // Read a few, then drop the connection mid-stream.
        for _ in 0..17 {
            if last == total {
                break;
            }
            let e = next_task_event(&mut s).await;
            let id = e["id"].as_u64().unwrap();
            assert_eq!(id, last + 1, "gap or duplicate after {last} (hop {hop})");
            last = id;
            seen.push(id);
        }
    }
    for p in producers {
        p.await.unwrap();
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    assert!(hop > 4, "the client resumed several times");
    if let Some(mut b) = b {
        b.stop().await;
    }
    a.cleanup().await;
}

both_modes!(
    resume_has_no_gap_or_duplicate_under_concurrent_producers,
    resume_has_no_gap_or_duplicate_under_concurrent_producers
);

async fn users_see_only_their_own_and_admins_see_all(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let mut alice = sse(&app, "alice", "", None).await;
    let mut bob = sse(&app, "bob", "", None).await;
    let admin_token = app.token_with("root", Role::Admin, Duration::from_secs(600));
    let mut all = sse_events(sse_response(&app, &admin_token, "all=true", None).await);
    let mut of_alice = sse_events(sse_response(&app, &admin_token, "user_id=alice", None).await);
    let mut all_ws = ws_with(&app, &format!("all=true&access_token={admin_token}"), &[]).await;
    let a = submit(&app, "alice", echo(0)).await;
    let b = submit(&app, "bob", echo(0)).await;
    let from_alice = until_terminal(&mut alice, &a).await;
    assert!(from_alice.iter().all(|e| e["task_id"] == a));
    let from_bob = until_terminal(&mut bob, &b).await;
    assert!(from_bob.iter().all(|e| e["task_id"] == b));
    assert_eq!(ids(&from_bob), [1, 2, 3], "ids are per user");
    assert!(
        until_terminal(&mut of_alice, &a)
            .await
            .iter()
            .all(|e| e["task_id"] == a)
    );
    // The all-users stream carries both, each with its owner's id, and no SSE id to resume by.
    let mut done = (false, false);
    while done != (true, true) {
        let e = next_sse(&mut all).await;
        if e.event == "subscribed" {
            continue;
        }
        assert_eq!(e.id, "", "all-users events carry no SSE id");
        let v: Value = serde_json::from_str(&e.data).unwrap();
        if v["type"] == "TaskCompleted" {
            if v["task_id"] == a {
                done.0 = true;
            } else if v["task_id"] == b {
                done.1 = true;
            }
        }
    }
    let mut ws_done = (false, false);
    while ws_done != (true, true) {
        let v = next_frame(&mut all_ws).await;
        if v["type"] == "TaskCompleted" {
            ws_done.0 |= v["user_id"] == "alice";
            ws_done.1 |= v["user_id"] == "bob";
        }
    }
    // Bob hears nothing of alice's.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bob.next())
            .await
            .is_err(),
        "bob received something more"
    );
    // Users may not watch others.
    let t = app.token("alice");
    assert_eq!(sse_response(&app, &t, "all=true", None).await.status(), 403);
    assert_eq!(
        sse_response(&app, &t, "user_id=bob", None).await.status(),
        403
    );
    assert_eq!(
        sse_response(&app, &t, &format!("task_id={b}"), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        sse_response(&app, &admin_token, "all=true&since=3", None)
            .await
            .status(),
        400
    );
    app.cleanup().await;
}

both_modes!(
    users_see_only_their_own_and_admins_see_all,
    users_see_only_their_own_and_admins_see_all
);

/// Clients that stop reading are cut off with a reason once their buffer is full, on SSE and
/// WebSocket, while the others keep going.
async fn slow_consumers_are_disconnected_with_a_reason(mode: Mode) {
    let Some(app) = spawn_app(
        mode,
        &[("NOTIFICATION_BUFFER", "8"), ("WORKER_POOL_SIZE", "20")],
    )
    .await
    else {
        return;
    };
    let token = app.token("alice");
    let mut slow_sse = slow_socket(&app).await;
    slow_sse
        .write_all(
            format!("GET /api/v1/events?access_token={token} HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let (mut slow_ws, _) = tokio_tungstenite::client_async(
        ws_url(&app, &format!("access_token={token}")),
        slow_socket(&app).await,
    )
    .await
    .expect("WebSocket handshake");
    // Enough events to fill the socket buffers and then the 8-event buffer.
    let tasks: Vec<Value> = (0..1000).map(|_| echo(0)).collect();
    for _ in 0..3 {
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
    // The slow SSE client finally reads: its stream ends with the reason.
    let mut text = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&text).contains("slow_consumer") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slow_consumer error"
        );
        let n = tokio::time::timeout(Duration::from_secs(30), slow_sse.read(&mut buf))
            .await
            .expect("read in time")
            .unwrap();
        assert!(n > 0, "closed without the reason");
        text.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&text).contains("event: error"));
    let (code, reason) = close_of(&mut slow_ws).await;
    assert_eq!(code, 4008, "{reason}");
    assert!(reason.contains("slow consumer"), "{reason}");
    let scrape = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for transport in ["sse", "websocket"] {
        let counted = format!("ais_slow_consumers_dropped_total{{transport=\"{transport}\"}}");
        assert!(scrape.contains(&counted), "{counted} missing:\n{scrape}");
    }
    // The server is fine: a new connection resumes.
    let mut again = sse(&app, "alice", "since=1", None).await;
    assert_eq!(next_task_event(&mut again).await["id"], 2);
    app.cleanup().await;
}

both_modes!(
    slow_consumers_are_disconnected_with_a_reason,
    slow_consumers_are_disconnected_with_a_reason
);

async fn connections_beyond_the_limit_are_refused(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("MAX_CONNECTIONS", "2")]).await else {
        return;
    };
    let mut one = sse(&app, "alice", "", None).await;
    next_sse(&mut one).await;
    let mut two = ws(&app, "alice", "").await;
    next_frame(&mut two).await;
    let resp = sse_response(&app, &app.token("alice"), "", None).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");
    let mut three = ws(&app, "alice", "").await;
    let (code, reason) = close_of(&mut three).await;
    assert_eq!(code, 1013, "{reason}");
    let mut notes = NotificationServiceClient::connect(app.base.clone())
        .await
        .unwrap();
    let status = notes
        .subscribe(authed(&app.token("alice"), SubscribeRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // A closed connection frees its slot.
    drop(one);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let resp = sse_response(&app, &app.token("alice"), "", None).await;
        if resp.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.cleanup().await;
}

both_modes!(
    connections_beyond_the_limit_are_refused,
    connections_beyond_the_limit_are_refused
);

async fn keepalives_flow_while_idle(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("NOTIFICATION_KEEPALIVE", "200ms")]).await else {
        return;
    };
    let mut resp = sse_response(&app, &app.token("alice"), "", None).await;
    let mut text = String::new();
    let started = tokio::time::Instant::now();
    while text.matches("\n:").count() + usize::from(text.starts_with(':')) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no keepalives: {text:?}"
        );
        let chunk = tokio::time::timeout(WAIT, resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let mut ws = ws(&app, "alice", "").await;
    let mut pings = 0;
    while pings < 3 {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if m.is_ping() {
            pings += 1;
        }
    }
    app.cleanup().await;
}

both_modes!(keepalives_flow_while_idle, keepalives_flow_while_idle);

async fn an_expired_token_closes_the_stream(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let short = app.token_with("alice", Role::User, Duration::from_secs(2));
    let mut s = sse_events(sse_response(&app, &short, "", None).await);
    let mut w = ws_with(&app, &format!("access_token={short}"), &[]).await;
    let mut notes = NotificationServiceClient::connect(app.base.clone())
        .await
        .unwrap();
    let mut g = notes
        .subscribe(authed(&short, SubscribeRequest::default()))
        .await
        .unwrap()
        .into_inner();
    loop {
        let e = next_sse(&mut s).await;
        if e.event == "error" {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(v["reason"], "token_expired");
            break;
        }
    }
    let (code, reason) = close_of(&mut w).await;
    assert_eq!(code, 4001, "{reason}");
    loop {
        match tokio::time::timeout(WAIT, g.next()).await.unwrap() {
            Some(Ok(_)) => continue,
            Some(Err(status)) => {
                assert_eq!(status.code(), Code::Unauthenticated);
                break;
            }
            None => panic!("gRPC stream ended without a status"),
        }
    }
    app.cleanup().await;
}

both_modes!(
    an_expired_token_closes_the_stream,
    an_expired_token_closes_the_stream
);

async fn history_older_than_retention_asks_for_a_resync(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("NOTIFICATION_RETENTION", "1s")]).await else {
        return;
    };
    let id = submit(&app, "alice", echo(0)).await;
    app.wait_terminal("alice", &id, WAIT).await;
    // Once the retention loop has deleted all three events, resuming from 2 cannot be
    // complete.
    let deadline = tokio::time::Instant::now() + WAIT;
    let first = loop {
        let mut s = sse(&app, "alice", "since=2", None).await;
        let first = next_sse(&mut s).await;
        if first.event == "resync" {
            break first;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(first.id, "3", "the stream continues after the last id");
    assert_eq!(
        serde_json::from_str::<Value>(&first.data).unwrap(),
        json!({"type": "resync", "recovered": false, "id": 3})
    );
    let mut w = ws(&app, "alice", "since=1").await;
    assert_eq!(
        next_frame(&mut w).await,
        json!({"type": "resync", "recovered": false, "id": 3})
    );
    // An id from the future is not recoverable either.
    let mut w = ws(&app, "alice", "since=99").await;
    assert_eq!(next_frame(&mut w).await["recovered"], false);
    let mut notes = NotificationServiceClient::connect(app.base.clone())
        .await
        .unwrap();
    let mut g = notes
        .subscribe(authed(
            &app.token("alice"),
            SubscribeRequest {
                since: Some(0),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let first = g.next().await.unwrap().unwrap();
    assert!(matches!(
        first.kind,
        Some(Kind::Subscribed(s)) if !s.recovered && s.last_id == 3
    ));
    // New events continue the numbering.
    let mut s = sse(&app, "alice", "", None).await;
    let id = submit(&app, "alice", echo(0)).await;
    assert_eq!(ids(&until_terminal(&mut s, &id).await), [4, 5, 6]);
    app.cleanup().await;
}

both_modes!(
    history_older_than_retention_asks_for_a_resync,
    history_older_than_retention_asks_for_a_resync
);

/// Events whose publish was lost (written by a store with no publisher, as if the bus dropped
/// them) still reach live clients, in order: read back from the database.
async fn lost_publishes_are_recovered_from_the_database(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let writer: std::sync::Arc<dyn TaskStore> = match mode {
        Mode::Embedded => {
            let dir = app.vars["DATA_DIR"].clone();
            std::sync::Arc::new(
                SqliteTaskStore::connect(&format!("sqlite://{dir}/tasks.db"))
                    .await
                    .unwrap(),
            )
        }
        Mode::Clustered => std::sync::Arc::new(
            PgTaskStore::connect(&app.vars["DATABASE_URL"], 2)
                .await
                .unwrap(),
        ),
    };
    let mut s = sse(&app, "alice", "", None).await;
    let mut w = ws(&app, "alice", "").await;
    next_frame(&mut w).await;
    use ai_integration_service::domain::{NewTask, SubmitPolicy, Submitter, TaskRequest, UserId};
    let new = NewTask::parse(
        &Submitter::user(UserId::parse("alice").unwrap()),
        TaskRequest::new("echo", json!({"delay_ms": 100000})),
        &SubmitPolicy::default(),
    )
    .unwrap();
    let task = ai_integration_service::domain::Task::create(
        new,
        0,
        Duration::from_secs(30),
        chrono::Utc::now(),
    );
    // Stored, never published, never queued: only the database knows.
    writer.insert_tasks(vec![task.clone()]).await.unwrap();
    let e = next_task_event(&mut s).await;
    assert_eq!(
        (e["id"].as_u64(), e["type"].as_str()),
        (Some(1), Some("TaskCreated"))
    );
    let f = next_frame(&mut w).await;
    assert_eq!(
        (f["id"].as_u64(), f["type"].as_str()),
        (Some(1), Some("TaskCreated"))
    );
    // A later published event fills the gap before it, again from the database.
    writer.cancel(task.id, chrono::Utc::now()).await.unwrap();
    let id = submit(&app, "alice", echo(0)).await;
    let events = until_terminal(&mut s, &id).await;
    assert_eq!(ids(&events), [2, 3, 4, 5]);
    assert_eq!(events[0]["type"], "TaskCancelled");
    assert_eq!(ids(&ws_until_terminal(&mut w, &id).await), [2, 3, 4, 5]);
    app.cleanup().await;
}

both_modes!(
    lost_publishes_are_recovered_from_the_database,
    lost_publishes_are_recovered_from_the_database
);

/// Submitted on A, run on another instance, watched live on C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_on_a_run_elsewhere_watched_on_c() {
    let Some(a) = spawn_app(Mode::Clustered, &[("WORKER_POOL_SIZE", "1")]).await else {
        return;
    };
    let b = start(a.vars.clone()).await;
    let c = start(a.vars.clone()).await;
    let mut watch = sse(&c, "alice", "", None).await;
    let mut ws = ws(&c, "alice", "").await;
    let mut ids_submitted = Vec::new();
    for _ in 0..3 {
        ids_submitted.push(submit(&a, "alice", echo(400)).await);
    }
    let mut workers = std::collections::HashSet::new();
    let mut done = 0;
    let mut events = Vec::new();
    while done < 3 {
        let e = next_task_event(&mut watch).await;
        if e["type"] == "TaskStarted" {
            workers.insert(e["data"]["worker_id"].as_str().unwrap().to_owned());
        }
        if e["type"] == "TaskCompleted" {
            done += 1;
        }
        events.push(e);
    }
    assert_eq!(ids(&events), (1..=9).collect::<Vec<_>>());
    assert!(
        workers.len() >= 2,
        "tasks ran on several instances: {workers:?}"
    );
    let mut frames = 0;
    while frames < 9 {
        if next_frame(&mut ws).await["type"]
            .as_str()
            .unwrap()
            .starts_with("Task")
        {
            frames += 1;
        }
    }
    let (mut b, mut c) = (b, c);
    c.stop().await;
    b.stop().await;
    a.cleanup().await;
}
