//! `ai.integration.v1.PipelineService`: the menu example over gRPC, owner checks and cancel.

use std::time::{Duration, Instant};

use ai_integration_service::api::proto::pipeline_service_client::PipelineServiceClient;
use ai_integration_service::api::proto::{
    CancelSessionRequest, CreateSessionRequest, GetPipelineSessionRequest,
    ListPipelineSessionsRequest, ListPipelinesRequest,
};
use tonic::{Code, Request};

use crate::helpers::{Mode, TestApp, spawn_app};

fn authed<T>(app: &TestApp, user: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token(user)).parse().unwrap(),
    );
    r
}

/// A string-fields item as protobuf.
pub(crate) fn item(id: &str, name: &str) -> prost_types::Value {
    use prost_types::value::Kind;
    let field = |s: &str| prost_types::Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    };
    prost_types::Value {
        kind: Some(Kind::StructValue(prost_types::Struct {
            fields: [
                ("id".to_owned(), field(id)),
                ("name".to_owned(), field(name)),
            ]
            .into(),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_menu_runs_over_grpc_for_its_owner_only() {
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let mut client = PipelineServiceClient::connect(app.base.clone())
        .await
        .unwrap();
    let defs = client
        .list_pipelines(authed(&app, "alice", ListPipelinesRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(!defs.pipelines.is_empty());
    let created = client
        .create_session(authed(
            &app,
            "alice",
            CreateSessionRequest {
                pipeline: "menu".into(),
                items: vec![item("m1", "唐揚げ")],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let id = created.session_id.clone();
    let get = || GetPipelineSessionRequest {
        session_id: id.clone(),
        page_size: 0,
        page_token: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let s = client
            .get_session(authed(&app, "alice", get()))
            .await
            .unwrap()
            .into_inner();
        if s.status == "completed" {
            break s;
        }
        assert!(Instant::now() < deadline, "not completed: {}", s.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.items.len(), 1);
    assert_eq!(done.items[0].stages["translation"].status, "completed");
    let stranger = client
        .get_session(authed(&app, "bob", get()))
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::NotFound);
    let cancel = client
        .cancel_session(authed(
            &app,
            "alice",
            CancelSessionRequest {
                session_id: id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(cancel.code(), Code::FailedPrecondition);
    let bad = client
        .create_session(authed(
            &app,
            "alice",
            CreateSessionRequest {
                pipeline: "menu".into(),
                items: vec![],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mine = client
        .list_sessions(authed(
            &app,
            "alice",
            ListPipelineSessionsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.sessions[0].session_id, id);
    app.cleanup().await;
}
