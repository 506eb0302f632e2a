//! Calls of the chat API used by the chat tests: start, send (JSON and SSE), get, close.

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// `POST /api/v1/chat/sessions` as `user`.
pub async fn start(app: &TestApp, user: &str, item: &str, context: Value) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}/api/v1/chat/sessions", app.base))
        .bearer_auth(app.token(user))
        .json(&json!({"item_id": item, "context": context}))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The id of a started session.
pub async fn started(app: &TestApp, user: &str, item: &str) -> String {
    let (status, body) = start(app, user, item, json!({"meaning": "a fruit"})).await;
    assert!(status == 201 || status == 200, "{status} {body}");
    body["session_id"].as_str().unwrap().to_owned()
}

fn message_body(content: &str, key: Option<&str>) -> Value {
    match key {
        Some(k) => json!({"content": content, "idempotency_key": k}),
        None => json!({"content": content}),
    }
}

/// `POST .../messages` as JSON: status and body once the answer is stored.
pub async fn send(
    app: &TestApp,
    user: &str,
    session: &str,
    content: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let resp = app
        .http
        .post(format!(
            "{}/api/v1/chat/sessions/{session}/messages",
            app.base
        ))
        .bearer_auth(app.token(user))
        .json(&message_body(content, key))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `POST .../messages` asking for SSE: the status and every `(event, data)` of the stream.
pub async fn send_sse(
    app: &TestApp,
    user: &str,
    session: &str,
    content: &str,
    key: Option<&str>,
) -> (u16, Vec<(String, Value)>) {
    let resp = app
        .http
        .post(format!(
            "{}/api/v1/chat/sessions/{session}/messages",
            app.base
        ))
        .bearer_auth(app.token(user))
        .header("accept", "text/event-stream")
        .json(&message_body(content, key))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    if status != 200 {
        return (
            status,
            vec![("body".into(), serde_json::from_str(&text).unwrap())],
        );
    }
    (status, parse_sse(&text))
}

/// `(event, data)` of each SSE block with data.
pub fn parse_sse(text: &str) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut name = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if !data.is_empty() {
            events.push((name, serde_json::from_str(&data).unwrap()));
        }
    }
    events
}

/// The deltas of an SSE reply, joined.
pub fn joined_deltas(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(e, _)| e == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect()
}

/// `GET /api/v1/chat/sessions/{id}` as `user`.
pub async fn get(app: &TestApp, user: &str, session: &str) -> (u16, Value) {
    app.get(user, &format!("/api/v1/chat/sessions/{session}"))
        .await
}

/// `DELETE /api/v1/chat/sessions/{id}` as `user`.
pub async fn close(app: &TestApp, user: &str, session: &str) -> (u16, Value) {
    let resp = app
        .http
        .delete(format!("{}/api/v1/chat/sessions/{session}", app.base))
        .bearer_auth(app.token(user))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}
