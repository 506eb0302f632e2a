//! Pipeline events on the user's own notification streams (`/api/v1/events`, `/ws`, gRPC
//! `Subscribe`) as well as the session's stream: numbered with the user's other events,
//! gapless, resumable, each carrying its `session_id`, never shown to another user; and gRPC
//! `Subscribe` narrowed to one session.

use std::collections::BTreeMap;

use ai_integration_service::api::proto::SubscribeRequest;
use ai_integration_service::api::proto::notification::Kind;
use ai_integration_service::api::proto::notification_service_client::NotificationServiceClient;
use futures::StreamExt;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};
use crate::notify_support::{Sse, WAIT, Ws, echo, next_frame, next_sse, sse, ws};
use crate::pipelines::{create, five_stage_file, items};

const ITEMS: usize = 3;
const STAGES: usize = 5;

fn authed<T>(app: &TestApp, user: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token(user)).parse().unwrap(),
    );
    r
}

/// alice's gRPC `Subscribe` narrowed to one pipeline session.
async fn session_stream(
    notes: &mut NotificationServiceClient<Channel>,
    app: &TestApp,
    session: &str,
) -> Streaming<ai_integration_service::api::proto::Notification> {
    let request = SubscribeRequest {
        session_id: Some(session.to_owned()),
        ..Default::default()
    };
    notes
        .subscribe(authed(app, "alice", request))
        .await
        .unwrap()
        .into_inner()
}

fn is_done(e: &Value, session: &str) -> bool {
    e["type"] == "PipelineSessionDone" && e["task_id"] == session
}

/// SSE events (not `subscribed`) up to and including `session`'s end.
async fn sse_until_done(s: &mut Sse, session: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let e = next_sse(s).await;
        if e.event == "subscribed" {
            continue;
        }
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(e.id, v["id"].to_string(), "SSE id is the event id");
        let done = is_done(&v, session);
        out.push(v);
        if done {
            return out;
        }
    }
}

async fn ws_until_done(w: &mut Ws, session: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let v = next_frame(w).await;
        if v["type"] == "subscribed" {
            continue;
        }
        let done = is_done(&v, session);
        out.push(v);
        if done {
            return out;
        }
    }
}

/// `(id, type, task_id)` of gRPC events up to `session`'s end.
async fn grpc_until_done(
    g: &mut Streaming<ai_integration_service::api::proto::Notification>,
    session: &str,
) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    loop {
        let n = tokio::time::timeout(WAIT, g.next())
            .await
            .expect("gRPC event in time")
            .expect("stream open")
            .expect("no error");
        let Some(Kind::Event(e)) = n.kind else {
            continue;
        };
        let done = e.r#type == "PipelineSessionDone" && e.task_id == session;
        out.push((e.id, e.r#type, e.task_id));
        if done {
            return out;
        }
    }
}

/// How many events of each pipeline type in `events`.
fn pipeline_counts<'a>(types: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in types.filter(|t| t.starts_with("Pipeline") && *t != "PipelineHeartbeat") {
        *counts.entry(t.to_owned()).or_default() += 1;
    }
    counts
}

fn expected_counts() -> BTreeMap<String, usize> {
    [
        ("PipelineItemDone", ITEMS),
        ("PipelineSessionDone", 1),
        ("PipelineStageResult", ITEMS * STAGES),
        ("PipelineStageStarted", ITEMS * STAGES),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_owned(), n))
    .collect()
}

fn assert_gapless(ids: &[u64]) {
    for w in ids.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap in {ids:?}");
    }
}

async fn pipeline_events_reach_every_user_stream(mode: Mode) {
    let file = five_stage_file(5, None);
    let path = file.path().display().to_string();
    let Some(app) = spawn_app(mode, &[("PIPELINES_FILE", path.as_str())]).await else {
        return;
    };
    let mut alice_sse = sse(&app, "alice", "", None).await;
    let mut alice_ws = ws(&app, "alice", "").await;
    assert_eq!(next_frame(&mut alice_ws).await["type"], "subscribed");
    let mut notes = NotificationServiceClient::connect(app.base.clone())
        .await
        .unwrap();
    let mut alice_grpc = notes
        .subscribe(authed(&app, "alice", SubscribeRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut bob_sse = sse(&app, "bob", "", None).await;

    let session = create(&app, "alice", "five", items(ITEMS, "m")).await;

    // The session narrowed on gRPC, opened after it started: from its first event.
    let mut only = session_stream(&mut notes, &app, &session).await;

    let by_sse = sse_until_done(&mut alice_sse, &session).await;
    let by_ws = ws_until_done(&mut alice_ws, &session).await;
    let by_grpc = grpc_until_done(&mut alice_grpc, &session).await;
    let narrowed = grpc_until_done(&mut only, &session).await;

    // Every transport saw the same events, numbered with the user's task events, no gap.
    let sse_ids: Vec<u64> = by_sse.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_gapless(&sse_ids);
    let ws_ids: Vec<u64> = by_ws.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ws_ids, sse_ids);
    let grpc_ids: Vec<u64> = by_grpc.iter().map(|e| e.0).collect();
    assert_eq!(grpc_ids, sse_ids);
    let counts = pipeline_counts(by_sse.iter().map(|e| e["type"].as_str().unwrap()));
    assert_eq!(counts, expected_counts(), "{by_sse:#?}");
    assert!(
        by_sse.iter().any(|e| e["type"] == "TaskCompleted"),
        "the stage tasks' own events are on the stream too"
    );
    for e in by_sse.iter().filter(|e| {
        e["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("Pipeline"))
    }) {
        assert_eq!(e["task_id"], session.as_str(), "{e}");
        assert_eq!(e["data"]["session_id"], session.as_str(), "{e}");
    }
    // Results keep dependency order on the stream: `d` of an item after its `b` and `c`.
    for item in 0..ITEMS {
        let at = |stage: &str| {
            by_sse
                .iter()
                .position(|e| {
                    e["type"] == "PipelineStageResult"
                        && e["data"]["stage"] == stage
                        && e["data"]["item_id"] == format!("m{item}")
                })
                .unwrap_or_else(|| panic!("no result of {stage} for m{item}"))
        };
        assert!(at("a") < at("b") && at("b") < at("d") && at("c") < at("d") && at("d") < at("e"));
    }

    // The narrowed stream: this session's pipeline events only, in the same order.
    assert!(
        narrowed
            .iter()
            .all(|e| e.2 == session && e.1.starts_with("Pipeline"))
    );
    let expected: Vec<u64> = by_sse
        .iter()
        .filter(|e| e["task_id"] == session.as_str())
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    let narrowed_ids: Vec<u64> = narrowed.iter().map(|e| e.0).collect();
    assert_eq!(narrowed_ids, expected);
    assert_eq!(
        pipeline_counts(narrowed.iter().map(|e| e.1.as_str())),
        expected_counts()
    );

    // Resume: reconnecting after any event replays exactly what followed it.
    let cut = by_sse.len() / 2;
    let mut resumed = sse(&app, "alice", "", Some(sse_ids[cut])).await;
    let replay = sse_until_done(&mut resumed, &session).await;
    let replay_ids: Vec<u64> = replay.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(replay_ids, sse_ids[cut + 1..]);

    // Bob sees none of it: the first event on his stream is his own task's.
    let (status, mine) = app.submit("bob", echo(0)).await;
    assert_eq!(status, 202, "{mine}");
    let first = loop {
        let e = next_sse(&mut bob_sse).await;
        if e.event != "subscribed" {
            break serde_json::from_str::<Value>(&e.data).unwrap();
        }
    };
    assert_eq!(first["task_id"], mine["task_id"], "{first}");
    app.cleanup().await;
}
both_modes!(
    pipeline_events_reach_every_user_stream,
    pipeline_events_reach_every_user_stream
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_a_session_checks_owner_and_arguments() {
    let file = five_stage_file(0, None);
    let path = file.path().display().to_string();
    let Some(app) = spawn_app(Mode::Embedded, &[("PIPELINES_FILE", path.as_str())]).await else {
        return;
    };
    let session = create(&app, "alice", "five", items(1, "m")).await;
    let mut notes = NotificationServiceClient::connect(app.base.clone())
        .await
        .unwrap();
    let refused = |req: SubscribeRequest, user: &'static str| {
        let mut notes = notes.clone();
        let r = authed(&app, user, req);
        async move { notes.subscribe(r).await.map(|_| ()).unwrap_err() }
    };
    let other = refused(
        SubscribeRequest {
            session_id: Some(session.clone()),
            ..Default::default()
        },
        "bob",
    )
    .await;
    assert_eq!(other.code(), Code::NotFound, "{other:?}");
    let bad = refused(
        SubscribeRequest {
            session_id: Some("not-a-uuid".into()),
            ..Default::default()
        },
        "alice",
    )
    .await;
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("not-a-uuid"), "{bad:?}");
    let both = refused(
        SubscribeRequest {
            session_id: Some(session.clone()),
            task_id: Some(session.clone()),
            ..Default::default()
        },
        "alice",
    )
    .await;
    assert_eq!(both.code(), Code::InvalidArgument);
    assert!(both.message().contains("session_id"), "{both:?}");
    // The owner's subscription works through to the session's end.
    let mut only = session_stream(&mut notes, &app, &session).await;
    let events = grpc_until_done(&mut only, &session).await;
    assert_eq!(events.last().unwrap().1, "PipelineSessionDone");
    app.cleanup().await;
}
