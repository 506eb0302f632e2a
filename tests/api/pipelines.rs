//! Pipelines (seed 004) end to end: sessions of many items through DAGs of echo and prompt
//! stages, in both modes: completion, partial failure, cancellation, dependency order, the
//! per-session cap, fairness, user isolation, bad definitions, and a kill -9 mid-session.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};
use crate::notify_support::{Sse, sse_events};

/// Five echo stages: a -> (b, c) -> d -> e, each waiting `delay` ms; `fail_times` of `a`
/// comes from the item (`fail`), so one item can fail for good.
pub(crate) fn five_stage_file(delay: u64, max_parallel: Option<u32>) -> tempfile::NamedTempFile {
    let stage = |name: &str, needs: &[&str], extra: Value| {
        let mut payload =
            json!({"delay_ms": delay, "from": format!("{name} of {{{{item.name}}}}")});
        for n in needs {
            payload[format!("after_{n}")] = json!(format!("{{{{{n}.from}}}}"));
        }
        if let Value::Object(m) = extra {
            payload.as_object_mut().unwrap().extend(m);
        }
        json!({"name": name, "task_type": "echo", "needs": needs, "payload": payload})
    };
    let mut pipeline = json!({"name": "five", "stages": [
        stage("a", &[], json!({"fail_times": "{{item.fail}}"})),
        stage("b", &["a"], json!({})),
        stage("c", &["a"], json!({})),
        stage("d", &["b", "c"], json!({})),
        stage("e", &["d"], json!({})),
    ]});
    if let Some(n) = max_parallel {
        pipeline["max_parallel_tasks"] = json!(n);
    }
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), json!({"pipelines": [pipeline]}).to_string()).unwrap();
    file
}

pub(crate) fn items(n: usize, prefix: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("{prefix}{i}"), "name": format!("dish {i}"), "fail": 0}))
        .collect()
}

async fn post(app: &TestApp, user: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(app.token(user))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn create(app: &TestApp, user: &str, pipeline: &str, items: Vec<Value>) -> String {
    let path = format!("/api/v1/pipelines/{pipeline}/sessions");
    let (status, body) = post(app, user, &path, json!({ "items": items })).await;
    assert_eq!(status, 201, "{body}");
    body["session_id"].as_str().unwrap().to_owned()
}

/// Polls a session until it is finished; returns it with every item.
async fn wait_finished(app: &TestApp, user: &str, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = app
            .get(
                user,
                &format!("/api/v1/pipeline-sessions/{id}?page_size=1000"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        if matches!(
            body["status"].as_str(),
            Some("completed" | "partially_failed" | "cancelled")
        ) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "session not finished: {}",
            body["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The session's SSE stream from its first event.
async fn session_events(app: &TestApp, user: &str, id: &str) -> Sse {
    let resp = app
        .http
        .get(format!("{}/api/v1/pipeline-sessions/{id}/events", app.base))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap();
    sse_events(resp)
}

/// Pipeline events of a stream up to and including `PipelineSessionDone`.
async fn until_done(s: &mut Sse) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), s.next())
            .await
            .expect("event in time")
            .expect("stream open");
        if !e.event.starts_with("Pipeline") {
            continue;
        }
        let v: Value = serde_json::from_str(&e.data).unwrap();
        let done = e.event == "PipelineSessionDone";
        out.push(v);
        if done {
            return out;
        }
    }
}

async fn a_hundred_items_run_five_stages_in_dependency_order(mode: Mode) {
    let file = five_stage_file(10, None);
    let path = file.path().display().to_string();
    let Some(app) = spawn_app(mode, &[("PIPELINES_FILE", &path)]).await else {
        return;
    };
    let id = create(&app, "alice", "five", items(100, "m")).await;
    let session = wait_finished(&app, "alice", &id, Duration::from_secs(90)).await;
    assert_eq!(session["status"], "completed", "{session}");
    let all = session["items"].as_array().unwrap();
    assert_eq!(all.len(), 100);
    for item in all {
        assert_eq!(item["status"], "completed");
        let name = item["data"]["name"].as_str().unwrap();
        let e = &item["stages"]["e"];
        assert_eq!(e["status"], "completed");
        assert_eq!(e["result"]["from"], format!("e of {name}"));
        assert_eq!(e["result"]["after_d"], format!("d of {name}"));
        assert_eq!(
            item["stages"]["d"]["result"]["after_c"],
            format!("c of {name}")
        );
    }
    // The stream replays every event in order: a stage's result never before its inputs',
    // and never more than 8 stages of the session running at once.
    let events = until_done(&mut session_events(&app, "alice", &id).await).await;
    let needs: HashMap<&str, Vec<&str>> = [
        ("a", vec![]),
        ("b", vec!["a"]),
        ("c", vec!["a"]),
        ("d", vec!["b", "c"]),
        ("e", vec!["d"]),
    ]
    .into();
    let mut done: HashMap<(String, String), usize> = HashMap::new();
    let (mut running, mut most) = (0i64, 0i64);
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["data"]["session_id"], id.as_str());
        let data = &e["data"];
        match e["type"].as_str().unwrap() {
            "PipelineStageStarted" => {
                running += 1;
                most = most.max(running);
            }
            "PipelineStageResult" => {
                running -= 1;
                let (item, stage) = (
                    data["item_id"].as_str().unwrap(),
                    data["stage"].as_str().unwrap(),
                );
                for need in &needs[stage] {
                    assert!(
                        done.contains_key(&(item.to_owned(), (*need).to_owned())),
                        "{item}: {stage} arrived before {need}"
                    );
                }
                done.insert((item.to_owned(), stage.to_owned()), n);
            }
            _ => {}
        }
    }
    assert_eq!(done.len(), 500);
    assert!(
        (2..=8).contains(&most),
        "at most 8 running at once, saw {most}"
    );
    app.cleanup().await;
}
both_modes!(
    a_hundred_items_run_five_stages_in_dependency_order,
    a_hundred_items_run_five_stages_in_dependency_order
);

async fn a_failing_stage_fails_only_its_item(mode: Mode) {
    let file = five_stage_file(0, None);
    let path = file.path().display().to_string();
    let Some(app) = spawn_app(
        mode,
        &[("PIPELINES_FILE", &path), ("JOB_QUEUE_MAX_RETRIES", "1")],
    )
    .await
    else {
        return;
    };
    let mut list = items(3, "ok");
    list.push(json!({"id": "bad", "name": "burnt", "fail": 100}));
    let id = create(&app, "alice", "five", list).await;
    let session = wait_finished(&app, "alice", &id, Duration::from_secs(60)).await;
    assert_eq!(session["status"], "partially_failed", "{session}");
    for item in session["items"].as_array().unwrap() {
        if item["id"] == "bad" {
            assert_eq!(item["status"], "partially_failed");
            assert_eq!(item["stages"]["a"]["status"], "failed");
            assert!(
                item["stages"]["a"]["error"]
                    .as_str()
                    .unwrap()
                    .contains("simulated failure")
            );
            for s in ["b", "c", "d", "e"] {
                assert_eq!(item["stages"][s]["status"], "skipped", "{s}");
            }
        } else {
            assert_eq!(item["status"], "completed", "{item}");
        }
    }
    app.cleanup().await;
}
both_modes!(
    a_failing_stage_fails_only_its_item,
    a_failing_stage_fails_only_its_item
);

async fn cancel_stops_queued_stages(mode: Mode) {
    let file = five_stage_file(300, Some(2));
    let path = file.path().display().to_string();
    let Some(app) = spawn_app(mode, &[("PIPELINES_FILE", &path)]).await else {
        return;
    };
    let id = create(&app, "alice", "five", items(20, "m")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = post(
        &app,
        "alice",
        &format!("/api/v1/pipeline-sessions/{id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let session = wait_finished(&app, "alice", &id, Duration::from_secs(5)).await;
    let stages: Vec<&Value> = session["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["stages"].as_object().unwrap().values())
        .collect();
    let started = stages.iter().filter(|s| !s["task_id"].is_null()).count();
    assert!(
        started <= 2,
        "only the 2 running stages ever got tasks, saw {started}"
    );
    assert!(
        stages.iter().all(|s| s["status"] == "cancelled"),
        "{session}"
    );
    let (status, _) = post(
        &app,
        "alice",
        &format!("/api/v1/pipeline-sessions/{id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(status, 409);
    app.cleanup().await;
}
both_modes!(cancel_stops_queued_stages, cancel_stops_queued_stages);

async fn a_small_session_is_not_held_back_by_a_large_one(mode: Mode) {
    let file = five_stage_file(20, None);
    let path = file.path().display().to_string();
    let Some(app) = spawn_app(
        mode,
        &[("PIPELINES_FILE", &path), ("WORKER_POOL_SIZE", "8")],
    )
    .await
    else {
        return;
    };
    let large = create(&app, "alice", "five", items(100, "l")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let small = create(&app, "bob", "five", items(2, "s")).await;
    let session = wait_finished(&app, "bob", &small, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert_eq!(session["status"], "completed");
    let (_, big) = app
        .get("alice", &format!("/api/v1/pipeline-sessions/{large}"))
        .await;
    assert_eq!(
        big["status"], "processing",
        "the large session is still running"
    );
    // 2 items x 4 levels x 20 ms, sharing 8 workers with the large session: well under the
    // ~6 s the large session needs.
    assert!(took < Duration::from_secs(3), "small session took {took:?}");
    app.cleanup().await;
}
both_modes!(
    a_small_session_is_not_held_back_by_a_large_one,
    a_small_session_is_not_held_back_by_a_large_one
);

async fn users_see_only_their_own_sessions(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let id = create(
        &app,
        "alice",
        "menu",
        vec![json!({"id": "m1", "name": "唐揚げ"})],
    )
    .await;
    for path in [
        format!("/api/v1/pipeline-sessions/{id}"),
        format!("/api/v1/pipeline-sessions/{id}/events"),
    ] {
        let (status, body) = app.get("bob", &path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _) = post(
        &app,
        "bob",
        &format!("/api/v1/pipeline-sessions/{id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &app,
        "bob",
        &format!("/api/v1/pipeline-sessions/{id}/items"),
        json!({"items": [{"id": "x"}]}),
    )
    .await;
    assert_eq!(status, 404);
    let (_, list) = app.get("bob", "/api/v1/pipeline-sessions").await;
    assert_eq!(list["sessions"], json!([]));
    let (_, list) = app.get("alice", "/api/v1/pipeline-sessions").await;
    assert_eq!(list["sessions"][0]["session_id"], id.as_str());
    let unauthenticated = app
        .http
        .get(format!("{}/api/v1/pipelines", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    app.cleanup().await;
}
both_modes!(
    users_see_only_their_own_sessions,
    users_see_only_their_own_sessions
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_menu_example_runs_on_development_answers() {
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let (status, defs) = app.get("alice", "/api/v1/pipelines").await;
    assert_eq!(status, 200);
    assert_eq!(defs["pipelines"][0]["name"], "menu");
    let id = create(
        &app,
        "alice",
        "menu",
        vec![
            json!({"id": "m1", "name": "唐揚げ"}),
            json!({"id": "m2", "name": "ラーメン"}),
        ],
    )
    .await;
    let (status, more) = post(
        &app,
        "alice",
        &format!("/api/v1/pipeline-sessions/{id}/items"),
        json!({"items": [{"id": "m3", "name": "餃子"}]}),
    )
    .await;
    assert_eq!(
        (status, more["item_count"].as_u64()),
        (200, Some(3)),
        "{more}"
    );
    let session = wait_finished(&app, "alice", &id, Duration::from_secs(30)).await;
    assert_eq!(session["status"], "completed", "{session}");
    let m1 = &session["items"][0];
    assert_eq!(
        m1["stages"]["translation"]["result"]["translation"],
        "[development] translation: 唐揚げ"
    );
    assert!(m1["stages"]["allergens"]["result"]["allergens"].is_array());
    // Without image providers, the image stages answer with development tiles.
    for (stage, source) in [("image_search", "search"), ("generated_image", "generated")] {
        let result = &m1["stages"][stage]["result"];
        assert_eq!(result["source"], source, "{stage}: {result}");
        assert_eq!(result["provider"], "development", "{stage}: {result}");
        let url = result["images"][0]["url"].as_str().unwrap_or_default();
        assert!(
            url.starts_with("data:image/svg+xml;base64,"),
            "{stage}: {url}"
        );
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_and_requests_are_refused() {
    let cycle = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        cycle.path(),
        "[[pipelines]]\nname = \"loop\"\n[[pipelines.stages]]\nname = \"a\"\ntask_type = \"echo\"\nneeds = [\"b\"]\n[[pipelines.stages]]\nname = \"b\"\ntask_type = \"echo\"\nneeds = [\"a\"]\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vars: HashMap<String, String> = [
        ("PIPELINES_FILE", cycle.path().display().to_string()),
        ("DATA_DIR", dir.path().display().to_string()),
        ("JWT_SECRET", crate::helpers::JWT_SECRET.to_owned()),
        ("PORT", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = ai_integration_service::config::Config::from_vars(&vars).unwrap();
    let err = ai_integration_service::app::Application::build(config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("cycle: a -> b -> a"), "{err}");

    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let cases = [
        (
            "/api/v1/pipelines/nope/sessions",
            json!({"items": [{"id": "a"}]}),
            404,
            "pipeline \"nope\" not found",
        ),
        (
            "/api/v1/pipelines/menu/sessions",
            json!({"items": items(101, "m")}),
            400,
            "batch_size",
        ),
        (
            "/api/v1/pipelines/menu/sessions",
            json!({"items": [{"id": "a"}, {"id": "a"}]}),
            400,
            "appears twice",
        ),
        (
            "/api/v1/pipelines/menu/sessions",
            json!({"items": [{"name": "x"}]}),
            400,
            "items[0].id is required",
        ),
        (
            "/api/v1/pipelines/menu/sessions",
            json!({"things": []}),
            400,
            "items",
        ),
        (
            "/api/v1/pipeline-sessions/not-a-uuid/items",
            json!({"items": [{"id": "a"}]}),
            400,
            "not a pipeline session id",
        ),
    ];
    for (path, body, want_status, want) in cases {
        let (status, answer) = post(&app, "alice", path, body).await;
        assert_eq!(status, want_status, "{path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{answer} should say {want}");
    }
    app.cleanup().await;
}

async fn idle_sessions_expire_and_running_ones_send_heartbeats(mode: Mode) {
    let file = five_stage_file(2500, None);
    let path = file.path().display().to_string();
    let vars = [
        ("PIPELINES_FILE", path.as_str()),
        ("PIPELINE_SESSION_TTL", "1s"),
        ("PIPELINE_PROGRESS_INTERVAL", "100ms"),
    ];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    let id = create(&app, "alice", "five", items(1, "slow")).await;
    let session = wait_finished(&app, "alice", &id, Duration::from_secs(10)).await;
    assert_eq!(session["status"], "cancelled", "{session}");
    assert!(
        session["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("expired"),
        "{session}"
    );
    let events = until_done(&mut session_events(&app, "alice", &id).await).await;
    let heartbeat = events
        .iter()
        .find(|e| e["type"] == "PipelineHeartbeat")
        .expect("a heartbeat while the stage ran");
    assert_eq!(heartbeat["data"]["stages"]["running"], 1, "{heartbeat}");
    let done = events.last().unwrap();
    assert_eq!(done["data"]["status"], "cancelled");
    app.cleanup().await;
}
both_modes!(
    idle_sessions_expire_and_running_ones_send_heartbeats,
    idle_sessions_expire_and_running_ones_send_heartbeats
);
