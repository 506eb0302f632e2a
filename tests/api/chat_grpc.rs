//! ChatService over gRPC, in both modes: a session started, an answer streamed as deltas then
//! the stored message, the session read, listed and closed, and another user kept out.

use ai_integration_service::api::proto::chat_service_client::ChatServiceClient;
use ai_integration_service::api::proto::{
    self, CloseSessionRequest, GetSessionRequest, ListSessionsRequest, SendMessageRequest,
    StartSessionRequest,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};

fn authed<T>(app: &TestApp, user: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token(user)).parse().unwrap(),
    );
    r
}

async fn client(app: &TestApp) -> ChatServiceClient<Channel> {
    ChatServiceClient::connect(app.base.clone()).await.unwrap()
}

async fn chat_over_grpc(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let mut c = client(&app).await;
    let started = c
        .start_session(authed(
            &app,
            "u1",
            StartSessionRequest {
                item_id: "menu:ramen".into(),
                context: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(started.created);
    let session = started.session.unwrap();
    assert_eq!(session.status, "active");

    let mut stream = c
        .send_message(authed(
            &app,
            "u1",
            SendMessageRequest {
                session_id: session.session_id.clone(),
                content: "Is it spicy?".into(),
                idempotency_key: "k1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    let mut stored = None;
    while let Some(event) = stream.message().await.unwrap() {
        match event.kind.unwrap() {
            proto::send_message_event::Kind::Delta(d) => text.push_str(&d),
            proto::send_message_event::Kind::Message(m) => {
                assert_eq!(event.question.unwrap().content, "Is it spicy?");
                stored = Some(m);
            }
        }
    }
    let stored = stored.expect("the stored answer ends the stream");
    assert_eq!(stored.content, text);
    assert_eq!(stored.provider, "echo");
    assert_eq!((stored.role.as_str(), stored.seq), ("assistant", 2));

    let got = c
        .get_session(authed(
            &app,
            "u1",
            GetSessionRequest {
                session_id: session.session_id.clone(),
                after_seq: 1,
                page_size: 10,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.messages.len(), 1, "the page after the question");
    assert_eq!(got.session.unwrap().message_count, 2);
    let listed = c
        .list_sessions(authed(&app, "u1", ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sessions.len(), 1);

    // Another user: NOT_FOUND for every call on the session.
    let err = c
        .get_session(authed(
            &app,
            "u2",
            GetSessionRequest {
                session_id: session.session_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .send_message(authed(
            &app,
            "u2",
            SendMessageRequest {
                session_id: session.session_id.clone(),
                content: "mine?".into(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .close_session(authed(
            &app,
            "u2",
            CloseSessionRequest {
                session_id: session.session_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .start_session(authed(&app, "u2", StartSessionRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("item_id"), "{err:?}");

    let closed = c
        .close_session(authed(
            &app,
            "u1",
            CloseSessionRequest {
                session_id: session.session_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.status, "closed");
    app.cleanup().await;
}
both_modes!(chat_grpc, chat_over_grpc);
