//! A fake OpenAI-compatible provider (`POST /v1/chat/completions`, streamed): it answers with
//! numbered words (`w0 w1 ...`), records when it wrote each answer's first token (keyed by the
//! tag at the start of the question), and can hold answers open after the first token until
//! released (the open-streams phase).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::routing::post;
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::watch;

/// What the fake does and has seen.
pub struct Fake {
    /// Words per answer.
    pub words: usize,
    /// Pause between words.
    pub word_delay: Duration,
    /// When each tag's first token was written.
    pub first_token: Mutex<HashMap<String, Instant>>,
    /// While true, answers stop after their first token and wait.
    pub hold: watch::Sender<bool>,
}

/// The answer of `words` words.
pub fn answer(words: usize) -> String {
    (0..words).map(|i| format!("w{i} ")).collect()
}

fn chunk(content: &str, finish: Option<&str>) -> Bytes {
    let v = json!({
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "bench",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {v}\n\n"))
}

async fn completions(State(fake): State<Arc<Fake>>, body: Bytes) -> axum::response::Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let question = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let tag = question
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, Infallible>>();
    let fake2 = fake.clone();
    tokio::spawn(async move {
        let mut hold = fake2.hold.subscribe();
        for i in 0..fake2.words {
            if i > 0 {
                tokio::time::sleep(fake2.word_delay).await;
                while *hold.borrow_and_update() {
                    if hold.changed().await.is_err() {
                        break;
                    }
                }
            }
            if i == 0 {
                fake2
                    .first_token
                    .lock()
                    .unwrap()
                    .insert(tag.clone(), Instant::now());
            }
            if tx
                .unbounded_send(Ok(chunk(&format!("w{i} "), None)))
                .is_err()
            {
                return;
            }
        }
        let words = fake2.words;
        let _ = tx.unbounded_send(Ok(chunk("", Some("stop"))));
        let usage = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
            "model": "bench", "choices": [],
            "usage": {"prompt_tokens": 50, "completion_tokens": words, "total_tokens": 50 + words}});
        let _ = tx.unbounded_send(Ok(Bytes::from(format!("data: {usage}\n\n"))));
        let _ = tx.unbounded_send(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    });
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(rx))
        .unwrap_or_default()
}

/// Serves the fake on `port` until the process ends.
pub async fn serve(fake: Arc<Fake>, port: u16) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        // Each token is its own small write: without TCP_NODELAY the first one can wait for
        // the ACK of the response headers (a delayed ACK: ~40 ms), which is not the service's.
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}
