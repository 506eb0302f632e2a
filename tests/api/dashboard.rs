//! The dashboard's live stream, `GET /api/v1/admin/dashboard/stream`: admin only, history
//! first, then a frame a second with the cluster's figures (summed over every instance in
//! clustered mode), ending at shutdown.

use std::time::Duration;

use ai_integration_service::auth::Role;
use eventsource_stream::Event as SseEvent;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app, start};
use crate::notify_support::{Sse, echo, next_sse, sse_events};

const STREAM: &str = "/api/v1/admin/dashboard/stream";

fn admin(app: &TestApp) -> String {
    app.token_with("ops", Role::Admin, Duration::from_secs(600))
}

async fn open(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(format!("{}{STREAM}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("stream request")
}

/// The figures a dashboard has seen so far: points by second (a point may come in the
/// history and again in a tick) and the latest state.
#[derive(Default)]
struct Seen {
    points: std::collections::BTreeMap<i64, Value>,
    state: Value,
}

impl Seen {
    fn take(&mut self, e: &SseEvent) {
        let v: Value = serde_json::from_str(&e.data).expect("JSON data");
        match e.event.as_str() {
            "history" => {
                for p in v["points"].as_array().into_iter().flatten() {
                    self.points.insert(p["at"].as_i64().unwrap(), p.clone());
                }
            }
            "tick" => {
                self.points
                    .insert(v["point"]["at"].as_i64().unwrap(), v["point"].clone());
                self.state = v["state"].clone();
            }
            other => panic!("unexpected event {other}: {}", e.data),
        }
    }

    /// Sum of column `i` (0 submitted, 1 completed, 2 failed) of series `key`.
    fn total(&self, key: &str, i: usize) -> u64 {
        self.points
            .values()
            .filter_map(|p| p["series"][key][i].as_u64())
            .sum()
    }
}

/// Reads the stream until `done` holds; panics after `within`.
async fn until(s: &mut Sse, seen: &mut Seen, within: Duration, done: impl Fn(&Seen) -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done(seen) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not seen in time: {:?} / state {}",
            seen.points.values().last(),
            seen.state
        );
        let e = next_sse(s).await;
        seen.take(&e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_admin_only() {
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let resp = open(&app, None).await;
    assert_eq!(resp.status(), 401);
    let resp = open(&app, Some("not-a-jwt")).await;
    assert_eq!(resp.status(), 401);
    let resp = open(&app, Some(&app.token("alice"))).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permission_denied", "{body}");

    let resp = open(&app, Some(&admin(&app))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut s = sse_events(resp);
    assert_eq!(next_sse(&mut s).await.event, "history");
    assert_eq!(next_sse(&mut s).await.event, "tick");
    app.cleanup().await;
}

async fn the_stream_counts_tasks_as_they_complete(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("JOB_QUEUE_MAX_RETRIES", "0")]).await else {
        return;
    };
    let mut s = sse_events(open(&app, Some(&admin(&app))).await);
    let mut seen = Seen::default();
    seen.take(&next_sse(&mut s).await);
    for _ in 0..4 {
        let (status, _) = app.submit("alice", echo(10)).await;
        assert_eq!(status, 202);
    }
    let (status, _) = app
        .submit(
            "alice",
            json!({"type": "echo", "payload": {"text": "x", "fail_times": 1}}),
        )
        .await;
    assert_eq!(status, 202);
    until(&mut s, &mut seen, Duration::from_secs(20), |s| {
        s.total("all", 1) >= 4 && s.total("all", 2) >= 1 && s.total("all", 0) >= 5
    })
    .await;
    assert_eq!(seen.total("all", 0), 5, "submitted");
    assert_eq!(seen.total("type:echo", 1), 4, "completed echo tasks");
    assert_eq!(seen.total("queue:default/type:echo", 2), 1, "failed");
    let p = seen
        .points
        .values()
        .find(|p| p["series"]["all"][1].as_u64() > Some(0))
        .unwrap();
    assert!(p["series"]["all"][4].as_f64().is_some(), "a P50: {p}");
    // The state: queues, this instance's pool, the dead letter.
    until(&mut s, &mut seen, Duration::from_secs(10), |s| {
        s.state["dead_letters"] == 1
    })
    .await;
    let state = &seen.state;
    assert_eq!(state["queues"][0]["name"], "default", "{state}");
    let ready = state["queues"][0]["ready"].as_array().unwrap();
    assert_eq!(ready.len(), 4, "a depth per priority band: {state}");
    let instances = state["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{state}");
    assert_eq!(instances[0]["this"], true);
    assert!(instances[0]["pool"]["slots"].as_u64() > Some(0), "{state}");
    app.cleanup().await;
}
both_modes!(
    the_stream_counts_tasks,
    the_stream_counts_tasks_as_they_complete
);

/// Two instances on one database and Redis: a dashboard on either shows both pools, and the
/// tasks submitted on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustered_figures_sum_every_instance() {
    let Some(a) = spawn_app(Mode::Clustered, &[]).await else {
        return;
    };
    let mut b = start(a.vars.clone()).await;
    let mut s = sse_events(open(&a, Some(&admin(&a))).await);
    let mut seen = Seen::default();
    seen.take(&next_sse(&mut s).await);
    for _ in 0..3 {
        assert_eq!(a.submit("alice", echo(0)).await.0, 202);
    }
    for _ in 0..4 {
        assert_eq!(b.submit("bob", echo(0)).await.0, 202);
    }
    until(&mut s, &mut seen, Duration::from_secs(20), |s| {
        s.total("all", 0) >= 7 && s.state["instances"].as_array().map_or(0, Vec::len) >= 2
    })
    .await;
    assert_eq!(seen.total("all", 0), 7, "submitted on both instances");
    until(&mut s, &mut seen, Duration::from_secs(20), |s| {
        s.total("all", 1) >= 7
    })
    .await;
    let instances = seen.state["instances"].as_array().unwrap().clone();
    assert!(
        instances
            .iter()
            .all(|i| i["pool"]["slots"].as_u64() > Some(0)),
        "every instance's pool: {instances:?}"
    );
    assert_eq!(
        instances.iter().filter(|i| i["this"] == true).count(),
        1,
        "{instances:?}"
    );
    b.stop().await;
    a.cleanup().await;
}

/// At shutdown the stream ends (it does not hold the drain up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_at_shutdown() {
    let Some(mut app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let mut s = sse_events(open(&app, Some(&admin(&app))).await);
    assert_eq!(next_sse(&mut s).await.event, "history");
    let took = app.stop().await;
    assert!(took < Duration::from_secs(2), "drain took {took:?}");
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while s.next().await.is_some() {}
    })
    .await;
    assert!(rest.is_ok(), "the stream ended");
    app.cleanup().await;
}
