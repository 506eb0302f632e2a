//! The event store and the progress read models over HTTP, in both modes: appends with
//! optimistic concurrency, reads, the SSE subscription, the read models fed by the
//! projections, rebuilds, /readyz under lag, and who may do what. The clustered takeover of a
//! projection is `projection_takeover` below.

use std::time::{Duration, Instant};

use ai_integration_service::auth::Role;
use serde_json::{Value, json};

use crate::faults::Cluster;
use crate::helpers::{Mode, TestApp, both_modes, spawn_app};
use crate::notify_support::{Sse, next_sse, sse_events};

fn service(app: &TestApp) -> String {
    app.token_with("ingest", Role::Service, Duration::from_secs(3600))
}

fn admin(app: &TestApp) -> String {
    app.token_with("root", Role::Admin, Duration::from_secs(3600))
}

async fn send(app: &TestApp, req: reqwest::RequestBuilder) -> (u16, Value) {
    let _ = app;
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    let req = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(&body);
    send(app, req).await
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let req = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token);
    send(app, req).await
}

fn answer(correct: bool, item: &str, user: &str) -> Value {
    json!({
        "type": if correct { "CorrectAnswerGiven" } else { "WrongAnswerGiven" },
        "data": {"session_id": "s1", "item_id": item, "response_time_ms": 900},
        "metadata": {"user_id": user, "correlation_id": "c-1"},
    })
}

fn session(user: &str) -> Vec<Value> {
    vec![
        json!({"type": "SessionStarted",
            "data": {"session_id": "s1", "user_id": user, "item_count": 3}}),
        answer(true, "i1", user),
        answer(false, "i2", user),
        answer(true, "i3", user),
        json!({"type": "SessionCompleted",
            "data": {"session_id": "s1", "score": 2, "duration_seconds": 600},
            "metadata": {"user_id": user}}),
    ]
}

/// Polls `GET path` as `token` until `done` holds of the answer (10 s at most).
async fn eventually(
    app: &TestApp,
    token: &str,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(app, token, path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn append_read_and_conflict(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let t = service(&app);
    let path = "/api/v1/eventstore/streams/session-s1";
    let mut events = session("alice");
    for e in &mut events {
        e["event_id"] = json!(uuid::Uuid::now_v7().to_string());
    }
    let id = events[0]["event_id"].clone();
    let (status, body) = post(
        &app,
        &t,
        path,
        json!({"expected_version": 0, "events": events}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["stream_version"], 5);
    let positions: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["global_position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    assert_eq!(body["events"][0]["event_id"], id);

    // The same append again (a retry after a lost answer): stored once, answered as then.
    let (status, again) = post(
        &app,
        &t,
        path,
        json!({"expected_version": 0, "events": events}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["already_stored"].clone(), again["events"].clone()),
        (json!(true), body["events"].clone())
    );

    // A stale expected version: 409 with the stream's current version.
    let more = json!({"expected_version": 3, "events": [answer(true, "i4", "alice")]});
    let (status, conflict) = post(&app, &t, path, more).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "version_conflict");
    assert_eq!(conflict["error"]["current_version"], 5);
    let ok = json!({"expected_version": 5, "events": [answer(true, "i4", "alice")]});
    assert_eq!(post(&app, &t, path, ok).await.0, 201);

    let (_, stream) = get(&app, &t, &format!("{path}?from_version=2&to_version=3")).await;
    let types: Vec<&str> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["CorrectAnswerGiven", "WrongAnswerGiven"]);
    let e = &stream["events"][0];
    assert_eq!(
        (e["stream_version"].clone(), e["global_position"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(e["metadata"]["user_id"], "alice");
    assert_eq!(e["metadata"]["correlation_id"], "c-1");

    let (_, all) = get(&app, &t, "/api/v1/eventstore/all?from_position=5&limit=10").await;
    assert_eq!(all["events"].as_array().unwrap().len(), 2);
    assert_eq!(all["next_position"], 7);
    let (_, end) = get(&app, &t, "/api/v1/eventstore/all?from_position=7").await;
    assert_eq!(
        (
            end["events"].as_array().unwrap().len(),
            end["next_position"].clone()
        ),
        (0, json!(7))
    );

    let (_, typed) = get(
        &app,
        &t,
        "/api/v1/eventstore/types/CorrectAnswerGiven?limit=2",
    )
    .await;
    assert_eq!(typed["events"].as_array().unwrap().len(), 2);
    let (_, none) = get(
        &app,
        &t,
        "/api/v1/eventstore/types/CorrectAnswerGiven?from=2999-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(none["events"], json!([]));
    app.cleanup().await;
}
both_modes!(append_read_and_conflict, append_read_and_conflict);

async fn bad_input_and_rights(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let t = service(&app);
    let path = "/api/v1/eventstore/streams/session-s2";
    let cases = [
        (
            json!({"events": [{"type": "Whatever", "data": {}}]}),
            "unknown event type",
        ),
        (
            json!({"events": [{"type": "SessionCompleted",
                "data": {"session_id": "s", "score": "high", "duration_seconds": 1},
                "metadata": {"user_id": "a"}}]}),
            "score",
        ),
        (
            json!({"events": [answer(true, "i", "a")], "expected_version": "three"}),
            "expected_version",
        ),
        (json!({"events": []}), "1-1000 events"),
        (
            json!({"events": vec![answer(true, "i", "a"); 1001]}),
            "1-1000 events",
        ),
        (
            json!({"events": [{"type": "CorrectAnswerGiven",
                "data": {"session_id": "s", "item_id": "i", "response_time_ms": 1}}]}),
            "metadata.user_id",
        ),
        (
            json!({"events": [{"type": "TaskFinished", "data": {}}]}),
            "service itself",
        ),
    ];
    for (body, says) in cases {
        let (status, answer) = post(&app, &t, path, body).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{message:?} should mention {says:?}"
        );
    }
    let (status, _) = post(
        &app,
        &t,
        "/api/v1/eventstore/streams/a%20b",
        json!({"events": [answer(true, "i", "a")]}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = get(&app, &t, "/api/v1/eventstore/all?from_position=minus").await;
    assert_eq!(status, 400);

    // Users neither append nor read the store, nor read anyone's progress but their own.
    let user = app.token("alice");
    let (status, _) = post(
        &app,
        &user,
        path,
        json!({"events": [answer(true, "i", "alice")]}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(get(&app, &user, "/api/v1/eventstore/all").await.0, 403);
    assert_eq!(get(&app, &user, "/api/v1/progress/users/bob").await.0, 403);
    assert_eq!(
        get(&app, &user, "/api/v1/progress/users/alice").await.0,
        200
    );
    assert_eq!(get(&app, &user, "/api/v1/admin/projections").await.0, 403);
    assert_eq!(
        post(
            &app,
            &user,
            "/api/v1/admin/projections/progress/rebuild",
            json!({})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post(
            &app,
            &t,
            "/api/v1/admin/projections/progress/rebuild",
            json!({})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post(
            &app,
            &admin(&app),
            "/api/v1/admin/projections/nope/rebuild",
            json!({})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        get(&app, &user, "/api/v1/progress/me/daily?from=yesterday")
            .await
            .0,
        400
    );
    assert_eq!(
        get(
            &app,
            &user,
            "/api/v1/progress/me/daily?from=2026-02-01&to=2026-01-01"
        )
        .await
        .0,
        400
    );
    let (status, _) = send(
        &app,
        app.http.get(format!("{}/api/v1/progress/me", app.base)),
    )
    .await;
    assert_eq!(status, 401);
    app.cleanup().await;
}
both_modes!(bad_input_and_rights, bad_input_and_rights);

async fn progress_follows_appends_and_survives_a_rebuild(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let t = service(&app);
    let mut events = vec![json!({"type": "UserCreated",
        "data": {"user_id": "alice", "email": "alice@example.com", "time_zone": "Asia/Tokyo"}})];
    events.extend(session("alice"));
    let (status, body) = post(
        &app,
        &t,
        "/api/v1/eventstore/streams/misc-1",
        json!({"events": events}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let review = json!({"events": [{"type": "ReviewProcessed",
        "data": {"user_id": "alice", "item_id": "i1", "new_interval": 8, "easiness_factor": 2.6}}]});
    assert_eq!(
        post(&app, &t, "/api/v1/eventstore/streams/review-alice", review)
            .await
            .0,
        201
    );

    let alice = app.token("alice");
    let p = eventually(&app, &alice, "/api/v1/progress/me", |p| {
        p["mastery_stats"]["short_term_mastered"] == 1
    })
    .await;
    assert_eq!(p["user_id"], "alice");
    assert_eq!(p["time_zone"], "Asia/Tokyo");
    assert_eq!(p["total_sessions_completed"], 1);
    assert_eq!(p["total_study_time_minutes"], 10);
    assert_eq!(p["current_streak"], 1);
    assert_eq!(p["total_items_learned"], 1);
    let accuracy = p["accuracy_rate"].as_f64().unwrap();
    assert!((accuracy - 2.0 / 3.0).abs() < 1e-9, "{accuracy}");
    assert_eq!(p["mastery_stats"]["unlearned"], 2);

    let (status, daily) = get(&app, &alice, "/api/v1/progress/me/daily").await;
    assert_eq!(status, 200, "{daily}");
    let days = daily["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{daily}");
    assert_eq!(days[0]["sessions_completed"], 1);
    assert_eq!(days[0]["new_mastery_count"], 1);
    assert_eq!(days[0]["study_time_minutes"], 10);

    let root = admin(&app);
    let (status, other) = get(&app, &root, "/api/v1/progress/users/alice").await;
    assert_eq!(
        (status, other["total_sessions_completed"].clone()),
        (200, json!(1))
    );
    let (status, other) = get(&app, &t, "/api/v1/progress/users/alice/daily").await;
    assert_eq!(
        (status, other["days"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (_, nobody) = get(&app, &app.token("nobody"), "/api/v1/progress/me").await;
    assert_eq!(
        (
            nobody["total_sessions_completed"].clone(),
            nobody["current_streak"].clone()
        ),
        (json!(0), json!(0))
    );

    // Admins see each projection's place; a rebuild starts from 0 beside the live model and
    // is swapped in once caught up, with the same answers.
    let (status, list) = get(&app, &root, "/api/v1/admin/projections").await;
    assert_eq!(status, 200);
    let progress = list["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "progress")
        .unwrap()
        .clone();
    assert_eq!(progress["head"], 7);
    assert_eq!(progress["position"], 7, "{progress}");
    assert_eq!(progress["state"], "running");
    assert!(progress["last_heartbeat"].is_string());
    let (status, started) = post(
        &app,
        &root,
        "/api/v1/admin/projections/progress/rebuild",
        json!({}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    eventually(&app, &root, "/api/v1/admin/projections", |l| {
        l["projections"].as_array().unwrap().iter().any(|p| {
            p["name"] == "progress" && p["active_generation"] == 2 && p["rebuild"].is_null()
        })
    })
    .await;
    let (_, after) = get(&app, &alice, "/api/v1/progress/me").await;
    assert_eq!(after, p);
    app.cleanup().await;
}
both_modes!(
    progress_follows_appends_and_survives_a_rebuild,
    progress_follows_appends_and_survives_a_rebuild
);

async fn next_event(s: &mut Sse) -> (String, Value) {
    let e = next_sse(s).await;
    (e.id.clone(), serde_json::from_str(&e.data).unwrap())
}

async fn subscribe_catches_up_then_goes_live(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let t = service(&app);
    let path = "/api/v1/eventstore/streams/inventory-1";
    let ev = |i: u32| json!({"type": "ItemAdded", "data": {"i": i}});
    assert_eq!(
        post(&app, &t, path, json!({"events": [ev(1), ev(2), ev(3)]}))
            .await
            .0,
        201
    );
    let open = |query: &str, last: Option<&str>| {
        let mut req = app
            .http
            .get(format!("{}/api/v1/eventstore/subscribe{query}", app.base))
            .bearer_auth(&t);
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id);
        }
        req.send()
    };
    let mut s = sse_events(open("?from_position=2", None).await.unwrap());
    let (id, e) = next_event(&mut s).await;
    assert_eq!((id.as_str(), e["data"]["i"].clone()), ("2", json!(2)));
    assert_eq!(next_event(&mut s).await.0, "3");
    // Live: appended after the catch-up.
    assert_eq!(
        post(&app, &t, path, json!({"events": [ev(4)]})).await.0,
        201
    );
    let (id, e) = next_event(&mut s).await;
    assert_eq!(
        (id.as_str(), e["type"].clone(), e["stream_version"].clone()),
        ("4", json!("ItemAdded"), json!(4))
    );
    drop(s);
    // A reconnect resumes after its Last-Event-ID.
    assert_eq!(
        post(&app, &t, path, json!({"events": [ev(5)]})).await.0,
        201
    );
    let mut s = sse_events(open("", Some("4")).await.unwrap());
    assert_eq!(next_event(&mut s).await.0, "5");
    drop(s);
    let user = app.token("alice");
    let resp = app
        .http
        .get(format!("{}/api/v1/eventstore/subscribe", app.base))
        .bearer_auth(user)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    app.cleanup().await;
}
both_modes!(
    subscribe_catches_up_then_goes_live,
    subscribe_catches_up_then_goes_live
);

async fn readyz_names_a_lagging_projection_and_stays_ready(mode: Mode) {
    // No runner here: whatever is appended waits.
    let vars = [
        ("PROJECTIONS_ENABLED", "false"),
        ("PROJECTION_LAG_THRESHOLD", "1ms"),
    ];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    let t = service(&app);
    let body = json!({"events": [{"type": "ItemAdded", "data": {}}]});
    assert_eq!(
        post(&app, &t, "/api/v1/eventstore/streams/inventory-1", body)
            .await
            .0,
        201
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resp = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("ready\nlagging projections:"), "{text}");
    assert!(text.contains("progress: 1 events behind"), "{text}");
    let (_, list) = get(&app, &admin(&app), "/api/v1/admin/projections").await;
    let progress = &list["projections"][0];
    assert_eq!(
        (progress["state"].clone(), progress["events_behind"].clone()),
        (json!("stopped"), json!(1))
    );
    app.cleanup().await;
}
both_modes!(
    readyz_names_a_lagging_projection_and_stays_ready,
    readyz_names_a_lagging_projection_and_stays_ready
);

/// Two instances on one database: one runs each projection; when it dies, the other takes
/// it over within seconds and folds what was appended meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_takeover() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let lease = [("PROJECTION_LEASE", "1s")];
    let mut first = cluster.start(&lease).await;
    let http = reqwest::Client::new();
    let keys = ai_integration_service::auth::JwtKeys::new(
        &ai_integration_service::config::Secret::new(crate::helpers::JWT_SECRET),
    );
    let token = |user: &str, role| {
        keys.issue(
            &ai_integration_service::domain::UserId::parse(user).unwrap(),
            role,
            Duration::from_secs(3600),
        )
        .unwrap()
    };
    let (svc, root) = (token("ingest", Role::Service), token("root", Role::Admin));
    let progress = |base: String| {
        let http = http.clone();
        let root = root.clone();
        async move {
            let list: Value = http
                .get(format!("{base}/api/v1/admin/projections"))
                .bearer_auth(root)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            list["projections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "progress")
                .unwrap()
                .clone()
        }
    };
    let append = |base: String, user: &'static str| {
        let http = http.clone();
        let svc = svc.clone();
        async move {
            let r = http
                .post(format!("{base}/api/v1/eventstore/streams/misc-{user}"))
                .bearer_auth(svc)
                .json(&json!({"events": session(user)}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    };
    // The first instance alone takes the lease; the second, started after, waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first_owner = loop {
        let p = progress(first.base.clone()).await;
        if p["state"] == "running" {
            break p["owner"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let second = cluster.start(&lease).await;
    append(second.base.clone(), "early").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while progress(second.base.clone()).await["position"] != 5 {
        assert!(Instant::now() < deadline, "the first instance folds");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        progress(second.base.clone()).await["owner"],
        json!(first_owner)
    );

    // The holder dies without a word (its lease is not released); the second takes over
    // once the lease has run out and folds what was appended meanwhile.
    let killed_at = Instant::now();
    let _ = first.child.kill();
    let _ = first.child.wait();
    append(second.base.clone(), "late").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let p = progress(second.base.clone()).await;
        if p["position"] == 10 {
            assert_ne!(p["owner"], json!(first_owner));
            assert_eq!(p["state"], "running");
            let took = killed_at.elapsed();
            assert!(took < Duration::from_secs(5), "took over after {took:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no takeover: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = app_token_check(&http, &second.base, &token("late", Role::User)).await;
    assert_eq!(token["total_sessions_completed"], 1);
    drop(first);
    drop(second);
    cluster.cleanup().await;
}

/// `GET /api/v1/progress/me` on `base` as the holder of `token`.
async fn app_token_check(http: &reqwest::Client, base: &str, token: &str) -> Value {
    http.get(format!("{base}/api/v1/progress/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
