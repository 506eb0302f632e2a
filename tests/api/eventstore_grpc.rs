//! EventStoreService and ProgressService over gRPC, with a real tonic client, in both modes.

use std::time::{Duration, Instant};

use ai_integration_service::api::proto::event_store_service_client::EventStoreServiceClient;
use ai_integration_service::api::proto::progress_service_client::ProgressServiceClient;
use ai_integration_service::api::proto::{
    AppendRequest, EventMetadata, GetDailyStatsRequest, GetStatsRangeRequest,
    GetUserProgressRequest, NewEvent, ReadAllRequest, ReadByTypeRequest, ReadStreamRequest,
    StoredEvent, SubscribeAllRequest,
};
use ai_integration_service::auth::Role;
use futures::StreamExt;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// A JSON value as protobuf.
fn value(v: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.into_iter().map(|(k, v)| (k, value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn event(t: &str, data: Value, user: Option<&str>) -> NewEvent {
    NewEvent {
        event_id: None,
        r#type: t.into(),
        data: Some(value(data)),
        metadata: Some(EventMetadata {
            user_id: user.map(str::to_owned),
            ..Default::default()
        }),
    }
}

fn session(user: &str) -> Vec<NewEvent> {
    vec![
        event(
            "SessionStarted",
            json!({"session_id": "g1", "user_id": user, "item_count": 2}),
            None,
        ),
        event(
            "CorrectAnswerGiven",
            json!({"session_id": "g1", "item_id": "i1", "response_time_ms": 500}),
            Some(user),
        ),
        event(
            "SessionCompleted",
            json!({"session_id": "g1", "score": 1, "duration_seconds": 120}),
            Some(user),
        ),
    ]
}

/// The next event of a subscription (10 s at most).
async fn next(s: &mut tonic::Streaming<StoredEvent>) -> StoredEvent {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("no error")
}

async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(app.base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn event_store_over_grpc(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let svc = app.token_with("ingest", Role::Service, Duration::from_secs(3600));
    let mut es = EventStoreServiceClient::new(channel(&app).await);
    let append = |expected: Option<u64>, events: Vec<NewEvent>| AppendRequest {
        stream_id: "session-g1".into(),
        expected_version: expected,
        events,
    };
    let done = es
        .append(authed(&svc, append(Some(0), session("gina"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.stream_version, 3);
    let positions: Vec<u64> = done.events.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, [1, 2, 3]);

    // A subscriber from position 2: the stored ones, then one appended later.
    let mut sub = es
        .subscribe_all(authed(&svc, SubscribeAllRequest { from_position: 2 }))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut sub).await;
    assert_eq!(
        (first.global_position, first.r#type.as_str()),
        (2, "CorrectAnswerGiven")
    );
    assert_eq!(first.metadata.unwrap().user_id.as_deref(), Some("gina"));
    assert_eq!(next(&mut sub).await.global_position, 3);

    // A stale version: ABORTED with the current version in the metadata.
    let more = vec![event(
        "CorrectAnswerGiven",
        json!({"session_id": "g1", "item_id": "i2", "response_time_ms": 1}),
        Some("gina"),
    )];
    let err = es
        .append(authed(&svc, append(Some(1), more.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(err.metadata().get("current-version").unwrap(), "3");
    es.append(authed(&svc, append(Some(3), more)))
        .await
        .unwrap();
    let live = next(&mut sub).await;
    assert_eq!((live.global_position, live.stream_version), (4, 4));

    let bad = es
        .append(authed(
            &svc,
            append(None, vec![event("Whatever", json!({}), None)]),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("unknown event type"), "{bad:?}");
    let user = app.token("gina");
    let denied = es
        .read_all(authed(&user, ReadAllRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let all = es
        .read_all(authed(
            &svc,
            ReadAllRequest {
                from_position: 3,
                limit: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((all.events.len(), all.next_position), (2, 5));
    let stream = es
        .read_stream(authed(
            &svc,
            ReadStreamRequest {
                stream_id: "session-g1".into(),
                from_version: 4,
                to_version: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.events.len(), 1);
    let typed = es
        .read_by_type(authed(
            &svc,
            ReadByTypeRequest {
                r#type: "CorrectAnswerGiven".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(typed.events.len(), 2);

    // The read models, over ProgressService.
    let mut progress = ProgressServiceClient::new(channel(&app).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let p = loop {
        let p = progress
            .get_user_progress(authed(&user, GetUserProgressRequest { user_id: None }))
            .await
            .unwrap()
            .into_inner();
        // All four learning events projected (the fourth, i2's answer, came after the session's
        // completion: waiting for the completion alone races it).
        let met = p.mastery_stats.as_ref().map_or(0, |m| m.unlearned);
        if p.total_sessions_completed == 1 && p.accuracy_rate == 1.0 && met == 2 {
            break p;
        }
        assert!(Instant::now() < deadline, "{p:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        (
            p.user_id.as_str(),
            p.total_study_time_minutes,
            p.current_streak
        ),
        ("gina", 2, 1)
    );
    let today = p.last_study_day.clone();
    let day = progress
        .get_daily_stats(authed(
            &user,
            GetDailyStatsRequest {
                user_id: None,
                date: today.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((day.sessions_completed, day.study_time_minutes), (1, 2));
    let empty = progress
        .get_daily_stats(authed(
            &user,
            GetDailyStatsRequest {
                user_id: None,
                date: "2001-01-01".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(empty.sessions_completed, 0);
    let range = progress
        .get_stats_range(authed(
            &svc,
            GetStatsRangeRequest {
                user_id: Some("gina".into()),
                from: String::new(),
                to: today,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(range.days.len(), 1);
    let other = progress
        .get_user_progress(authed(
            &user,
            GetUserProgressRequest {
                user_id: Some("someone".into()),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    let bad_date = progress
        .get_daily_stats(authed(
            &user,
            GetDailyStatsRequest {
                user_id: None,
                date: "tomorrow".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_date.code(), Code::InvalidArgument);
    drop(sub);
    app.cleanup().await;
}
both_modes!(event_store_over_grpc, event_store_over_grpc);
