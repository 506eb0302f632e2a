//! Limits at the edge, each refused with a clear error: body size, JSON depth, header size,
//! slow request heads and bodies (raw TCP clients), gRPC message size, requests per second per
//! user (shared through Redis in clustered mode), streams per user, and WebSockets that stop
//! answering pings.

use std::time::{Duration, Instant};

use ai_integration_service::api::proto::chat_service_client::ChatServiceClient;
use ai_integration_service::api::proto::notification_service_client::NotificationServiceClient;
use ai_integration_service::api::proto::{ListTasksRequest, StartSessionRequest, SubscribeRequest};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::{Code, Request};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app, start};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::notify_support::{close_of, sse_response, ws};

fn authed<T>(app: &TestApp, user: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token(user)).parse().unwrap(),
    );
    r
}

async fn post_raw(app: &TestApp, user: &str, body: String) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}/api/v1/tasks", app.base))
        .bearer_auth(app.token(user))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// The address of the app, for raw sockets.
fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads what the server sends until it closes (or `within` passes).
async fn read_to_close(tcp: &mut TcpStream, within: Duration) -> (String, bool) {
    let (bytes, closed) = read_to_close_bytes(tcp, within).await;
    (String::from_utf8_lossy(&bytes).into_owned(), closed)
}

/// [`read_to_close`], as bytes.
async fn read_to_close_bytes(tcp: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_size_or_depth_limit_are_refused() {
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let big = json!({"type": "echo", "payload": {"s": "y".repeat(3 << 20)}}).to_string();
    let (status, err) = post_raw(&app, "alice", big).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["code"], "payload_too_large");
    assert!(message(&err).contains("2097152 bytes"), "{err}");

    let deep = format!(
        r#"{{"type": "echo", "payload": {{"a": {}1{}}}}}"#,
        "[".repeat(70),
        "]".repeat(70)
    );
    let (status, err) = post_raw(&app, "alice", deep).await;
    assert_eq!(status, 400, "{err}");
    assert!(message(&err).contains("at most 64"), "{err}");
    // Within the limit it is the task's own rules that speak.
    let fine = json!({"type": "echo", "payload": {"a": [[[1]]]}}).to_string();
    assert_eq!(post_raw(&app, "alice", fine).await.0, 202);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_limit_get_431() {
    let Some(app) = spawn_app(Mode::Embedded, &[("MAX_HEADER_BYTES", "8192")]).await else {
        return;
    };
    let resp = app
        .http
        .get(format!("{}/api/v1/tasks", app.base))
        .bearer_auth(app.token("alice"))
        .header("x-padding", "p".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 431);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "headers_too_large", "{err}");
    assert!(message(&err).contains("MAX_HEADER_BYTES"), "{err}");
    assert!(message(&err).contains("8192"), "{err}");

    // Far over it, hyper stops reading the head and answers 431 itself.
    let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n",
        "p".repeat(200_000)
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let (answer, closed) = read_to_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert!(closed);

    let resp = app.http.get(format!("{}/healthz", app.base)).send().await;
    assert_eq!(resp.unwrap().status(), 200, "the server still serves");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_and_holds_nothing() {
    let Some(app) = spawn_app(Mode::Embedded, &[("HEADER_READ_TIMEOUT", "1s")]).await else {
        return;
    };
    // Many connections that trickle their heads, one byte at a time.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(tcp);
    }
    let started = Instant::now();
    let trickle = async {
        for _ in 0..10 {
            for tcp in &mut slow {
                let _ = tcp.write_all(b"x").await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // Meanwhile, other clients are served at once.
    let served = async {
        for _ in 0..5 {
            let t = Instant::now();
            let resp = app.http.get(format!("{}/healthz", app.base)).send().await;
            assert_eq!(resp.unwrap().status(), 200);
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "{:?}",
                t.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(trickle, served);
    for tcp in &mut slow {
        let (_, closed) = read_to_close(tcp, Duration::from_secs(3)).await;
        assert!(closed, "a slow head is cut off");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "not before the timeout: {took:?}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_gets_408() {
    let Some(app) = spawn_app(Mode::Embedded, &[("BODY_READ_TIMEOUT", "500ms")]).await else {
        return;
    };
    let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "POST /api/v1/tasks HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"type\":",
        app.token("alice")
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (answer, closed) = read_to_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("BODY_READ_TIMEOUT"), "{answer:?}");
    assert!(answer.contains("\"body_timeout\""), "{answer:?}");
    assert!(
        closed,
        "the connection is not kept for the rest of the body"
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_message_over_the_limit_is_resource_exhausted() {
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let mut chat = ChatServiceClient::connect(app.base.clone()).await.unwrap();
    let req = StartSessionRequest {
        item_id: "i".repeat(5 << 20),
        context: None,
    };
    let err = chat
        .start_session(authed(&app, "alice", req))
        .await
        .expect_err("over 4 MiB");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("limit of 4194304 bytes"), "{err:?}");
    app.cleanup().await;
}

async fn requests_per_user_are_rate_limited(mode: Mode) {
    let vars = [("USER_RATE_LIMIT", "1"), ("USER_RATE_LIMIT_BURST", "3")];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    // Clustered: a second instance on the same Redis counts the same requests.
    let mut second = match mode {
        Mode::Clustered => Some(start(app.vars.clone()).await),
        Mode::Embedded => None,
    };
    let other = second.as_ref().unwrap_or(&app);
    for instance in [&app, other, &app] {
        assert_eq!(instance.get("alice", "/api/v1/tasks").await.0, 200);
    }
    let resp = app
        .http
        .get(format!("{}/api/v1/tasks", other.base))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "resource_exhausted");
    assert!(message(&err).contains("USER_RATE_LIMIT"), "{err}");
    assert_eq!(app.get("alice", "/api/v1/tasks").await.0, 429);

    let mut grpc = app.grpc().await;
    let err = grpc
        .list_tasks(authed(&app, "alice", ListTasksRequest::default()))
        .await
        .expect_err("limited over gRPC too");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("USER_RATE_LIMIT"), "{err:?}");
    assert!(err.metadata().get("retry-after").is_some());
    assert_eq!(other.get("bob", "/api/v1/tasks").await.0, 200, "per user");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(other.get("alice", "/api/v1/tasks").await.0, 200, "recovers");
    if let Some(second) = &mut second {
        second.stop().await;
    }
    app.cleanup().await;
}
both_modes!(
    requests_per_user_are_rate_limited,
    requests_per_user_are_rate_limited
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_user_are_capped_and_released_when_a_client_dies() {
    let vars = [
        ("MAX_STREAMS_PER_USER", "2"),
        ("NOTIFICATION_KEEPALIVE", "100ms"),
    ];
    let Some(app) = spawn_app(Mode::Embedded, &vars).await else {
        return;
    };
    let token = app.token("alice");
    let first = sse_response(&app, &token, "", None).await;
    assert_eq!(first.status(), 200);
    // The second stream over a raw socket that will die without a word.
    let mut dead = TcpStream::connect(addr(&app)).await.unwrap();
    let head =
        format!("GET /api/v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n");
    dead.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = dead.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let refused = sse_response(&app, &token, "", None).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let err: Value = refused.json().await.unwrap();
    assert!(message(&err).contains("MAX_STREAMS_PER_USER"), "{err}");
    let (code, reason) = close_of(&mut ws(&app, "alice", "").await).await;
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("MAX_STREAMS_PER_USER"), "{reason}");
    let mut notifications = NotificationServiceClient::connect(app.base.clone())
        .await
        .unwrap();
    let err = notifications
        .subscribe(authed(&app, "alice", SubscribeRequest::default()))
        .await
        .expect_err("over the quota");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let bob = sse_response(&app, &app.token("bob"), "", None).await;
    assert_eq!(bob.status(), 200, "other users are not affected");

    // The dead client's next keepalive write fails, and its place is given back.
    drop(dead);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = sse_response(&app, &token, "", None).await;
        if again.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead stream's place came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(first);
    app.cleanup().await;
}

/// The frames (opcode, payload) of a server's WebSocket bytes: unmasked, unfragmented.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (len, head) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            n if n < 126 => (n as usize, 2),
            _ => break,
        };
        let Some(payload) = bytes.get(head..head + len) else {
            break;
        };
        out.push((bytes[0] & 0x0f, payload.to_vec()));
        bytes = &bytes[head + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_stops_answering_pings_is_closed() {
    let vars = [
        ("NOTIFICATION_KEEPALIVE", "100ms"),
        ("WS_PONG_TIMEOUT", "300ms"),
    ];
    let Some(app) = spawn_app(Mode::Embedded, &vars).await else {
        return;
    };
    // A raw client that upgrades, then never answers (and never writes, so the server's close
    // reaches it whole).
    let mut silent = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "GET /ws?access_token={} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\n\
         upgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        app.token("alice")
    );
    silent.write_all(head.as_bytes()).await.unwrap();
    let mut alive = ws(&app, "alice", "").await;
    // `alive` reads, and so answers pings.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(frame) = tokio::time::timeout_at(until, alive.next()).await {
        if let Some(Ok(Message::Close(f))) = frame {
            panic!("a client that answers pings was closed: {f:?}");
        }
    }
    let (answer, closed) = read_to_close_bytes(&mut silent, Duration::from_secs(5)).await;
    assert!(closed, "the server lets the silent client go");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("upgrade response");
    assert!(answer.starts_with(b"HTTP/1.1 101"));
    let frames = frames(&answer[split + 4..]);
    assert!(
        frames.iter().any(|(op, _)| *op == 0x9),
        "pinged: {frames:?}"
    );
    let (op, close) = frames.last().expect("a close frame");
    assert_eq!(*op, 0x8, "{frames:?}");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 4009);
    let reason = String::from_utf8_lossy(&close[2..]);
    assert!(reason.contains("WS_PONG_TIMEOUT"), "{reason}");
    app.cleanup().await;
}
