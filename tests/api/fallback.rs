//! A path no route has answers like HTTP to HTTP clients (404 or 405, our JSON error shape)
//! and like gRPC to gRPC clients (UNIMPLEMENTED).

use serde_json::{Value, json};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::grpcurl;
use crate::helpers::{Mode, TestApp, both_modes, spawn_app};

/// `method` `path` with a valid token: status, `Allow` header and JSON body.
async fn send(app: &TestApp, method: reqwest::Method, path: &str) -> (u16, String, Value) {
    let resp = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(app.token("u1"))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let allow = resp
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let kind = resp.headers().get("content-type").cloned();
    assert_eq!(
        kind.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{path}"
    );
    (status, allow, resp.json().await.expect("a JSON body"))
}

/// A unary gRPC call to `path`, whatever service it names.
async fn grpc_call(app: &TestApp, path: &'static str) -> tonic::Status {
    let channel = Channel::from_shared(app.base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    grpc.unary(
        tonic::Request::new(HealthCheckRequest::default()),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .expect_err("no such method")
}

async fn wrong_paths_answer_like_http(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    use reqwest::Method;
    for (method, path) in [
        (Method::GET, "/metric"),
        (Method::POST, "/api/v1/taks"),
        (Method::GET, "/api/v1/tasks/a/b/c"),
    ] {
        let (status, _, body) = send(&app, method.clone(), path).await;
        assert_eq!(status, 404, "{method} {path}");
        let message = format!("no route for {method} {path}");
        assert_eq!(
            body,
            json!({"error": {"code": "not_found", "message": message}})
        );
    }

    for (method, path, allowed) in [
        (Method::POST, "/readyz", "GET,HEAD"),
        (Method::DELETE, "/api/v1/tasks", "POST,GET,HEAD"),
    ] {
        let (status, allow, body) = send(&app, method.clone(), path).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(allow, allowed, "{method} {path}");
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
        let message = format!("method {method} is not allowed on {path}");
        assert_eq!(body["error"]["message"], message.as_str());
    }

    // gRPC clients still hear gRPC: an unknown service, and an unknown method of ours.
    for path in [
        "/foo.Bar/Baz",
        "/ai.integration.v1.TaskService/NoSuchMethod",
    ] {
        let status = grpc_call(&app, path).await;
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
    }
    app.cleanup().await;
}
both_modes!(wrong_paths, wrong_paths_answer_like_http);

/// grpcurl calling a method the server does not have (described by a proto file of its own,
/// since reflection rightly does not know it) is told UNIMPLEMENTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_unknown_method_is_unimplemented() {
    if !grpcurl::available() {
        return;
    }
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nope.proto"),
        "syntax = \"proto3\";\npackage nope.v1;\nmessage Empty {}\n\
         service Nope { rpc Call(Empty) returns (Empty); }\n",
    )
    .unwrap();
    let import = dir.path().display().to_string();
    let out = grpcurl::run(
        &app.base,
        &["-import-path", &import, "-proto", "nope.proto", "-d", "{}"],
        &["nope.v1.Nope/Call"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains("Code: Unimplemented"), "{stderr}");
    app.cleanup().await;
}
