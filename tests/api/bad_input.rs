//! Bad HTTP input gets a clear error, and nothing is stored.

use std::time::Duration;

use ai_integration_service::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, Mode, TestApp, both_modes, spawn_app};

async fn raw_post(app: &TestApp, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}/api/v1/tasks", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn rejected_requests(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let token = app.token("alice");
    let t = Some(token.as_str());
    let big = "x".repeat(1024 * 1024 + 10);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "unknown type",
            json!({"type": "translate"}).to_string(),
            400,
            "unknown task type",
        ),
        ("malformed JSON", "{\"type\": ".to_owned(), 400, ""),
        (
            "missing type",
            json!({"payload": {}}).to_string(),
            400,
            "type",
        ),
        (
            "unknown field",
            json!({"type": "echo", "colour": 1}).to_string(),
            400,
            "colour",
        ),
        (
            "payload not an object",
            json!({"type": "echo", "payload": [1]}).to_string(),
            400,
            "JSON object",
        ),
        (
            "priority too high",
            json!({"type": "echo", "priority": 11}).to_string(),
            400,
            "priority",
        ),
        (
            "priority too low",
            json!({"type": "echo", "priority": 0}).to_string(),
            400,
            "priority",
        ),
        (
            "bad echo option",
            json!({"type": "echo", "payload": {"delay_ms": "soon"}}).to_string(),
            400,
            "delay_ms",
        ),
        (
            "payload over 1 MiB",
            json!({"type": "echo", "payload": {"s": big}}).to_string(),
            413,
            "limit",
        ),
        (
            "body far over the limit",
            json!({"type": "echo", "payload": {"s": "y".repeat(3 << 20)}}).to_string(),
            413,
            "",
        ),
    ];
    for (what, body, want, needle) in cases {
        let (status, err) = raw_post(&app, t, &body).await;
        assert_eq!(status, want, "{what}: {err}");
        let msg = err["error"]["message"].as_str().unwrap_or_default();
        assert!(
            err["error"]["code"].is_string(),
            "{what}: no error code in {err}"
        );
        assert!(
            msg.contains(needle),
            "{what}: message {msg:?} lacks {needle:?}"
        );
    }

    let (status, _) = app.get("alice", "/api/v1/tasks/not-a-uuid").await;
    assert_eq!(status, 400);
    let (status, _) = app
        .get("alice", &format!("/api/v1/tasks/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);

    let (_, list) = app.get("alice", "/api/v1/tasks").await;
    assert_eq!(
        list["tasks"].as_array().unwrap().len(),
        0,
        "nothing stored: {list}"
    );
    app.cleanup().await;
}
both_modes!(rejected_requests, rejected_requests);

async fn bad_tokens(mode: Mode) {
    // No clock-skew leeway, so a token a second past its expiry is refused.
    let Some(app) = spawn_app(mode, &[("JWT_LEEWAY", "0s")]).await else {
        return;
    };
    let body = json!({"type": "echo"}).to_string();
    let (status, err) = raw_post(&app, None, &body).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["error"]["code"], "unauthenticated");

    let expired = app.token_with("alice", Role::User, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, err) = raw_post(&app, Some(&expired), &body).await;
    assert_eq!(status, 401);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{err}"
    );

    let forged = {
        use ai_integration_service::auth::JwtKeys;
        use ai_integration_service::config::Secret;
        let other = JwtKeys::new(&Secret::new(format!("{JWT_SECRET}-but-not-quite")));
        other
            .issue(
                &ai_integration_service::domain::UserId::parse("alice").unwrap(),
                Role::Admin,
                Duration::from_secs(60),
            )
            .unwrap()
    };
    let (status, _) = raw_post(&app, Some(&forged), &body).await;
    assert_eq!(status, 401);
    let (status, _) = raw_post(&app, Some("garbage"), &body).await;
    assert_eq!(status, 401);

    let (_, list) = app.get("alice", "/api/v1/tasks").await;
    assert_eq!(list["tasks"].as_array().unwrap().len(), 0);
    app.cleanup().await;
}
both_modes!(bad_tokens, bad_tokens);
