//! Chat sessions end to end, in both modes: the development provider with no keys, fake
//! providers speaking their real streaming formats (fallback before the first token, a
//! stream broken mid-answer and its retry, context trimming), isolation between users,
//! concurrent messages, limits and idle expiry.

use std::time::Duration;

use serde_json::{Value, json};

use crate::ai::{app, env};
use crate::chat_support::{close, get, joined_deltas, send, send_sse, start, started};
use crate::helpers::{Mode, both_modes, spawn_app};
use crate::support::fake_providers::{FakeProviders, Fault};

async fn chat_with_the_development_provider(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let (status, s) = start(&app, "u1", "word:apple", json!({"meaning": "a fruit"})).await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["status"], "active");
    assert_eq!(s["message_count"], 0);
    let id = s["session_id"].as_str().unwrap().to_owned();
    let (status, again) = start(&app, "u1", "word:apple", Value::Null).await;
    assert_eq!(status, 200, "the active session is returned");
    assert_eq!(again["session_id"], id.as_str());

    let (status, events) = send_sse(&app, "u1", &id, "What colour is it?", None).await;
    assert_eq!(status, 200);
    let (last, stored) = events.last().unwrap();
    assert_eq!(last, "message", "{events:?}");
    assert!(
        events.len() > 3,
        "the answer streamed in pieces: {events:?}"
    );
    assert_eq!(
        joined_deltas(&events),
        stored["message"]["content"].as_str().unwrap()
    );
    assert_eq!(stored["message"]["provider"], "echo");
    assert!(stored["message"]["tokens_used"].as_u64().unwrap() > 0);

    let (status, answer) = send(&app, "u1", &id, "And its taste?", None).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["message"]["content"]
            .as_str()
            .unwrap()
            .contains("And its taste?")
    );

    let (status, s) = get(&app, "u1", &id).await;
    assert_eq!(status, 200);
    assert_eq!(s["message_count"], 4);
    let roles: Vec<_> = s["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].clone())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    for m in s["messages"].as_array().unwrap() {
        for field in ["role", "content", "tokens_used", "provider", "created_at"] {
            assert!(m.get(field).is_some(), "{field} in {m}");
        }
    }
    let (status, list) = app.get("u1", "/api/v1/chat/sessions").await;
    assert_eq!(status, 200);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);

    let (status, closed) = close(&app, "u1", &id).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["status"], "closed");
    assert_eq!(get(&app, "u1", &id).await.0, 404);
    assert_eq!(close(&app, "u1", &id).await.0, 404);
    app.cleanup().await;
}
both_modes!(chat_dev_provider, chat_with_the_development_provider);

async fn chat_sessions_are_private(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let id = started(&app, "alice", "word:apple").await;
    let (status, body) = get(&app, "bob", &id).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(send(&app, "bob", &id, "hi", None).await.0, 404);
    assert_eq!(close(&app, "bob", &id).await.0, 404);
    let (_, list) = app.get("bob", "/api/v1/chat/sessions").await;
    assert!(list["sessions"].as_array().unwrap().is_empty());
    // Alice's session is untouched.
    let (status, s) = get(&app, "alice", &id).await;
    assert_eq!((status, s["status"].as_str()), (200, Some("active")));
    // Bad input names what is wrong.
    let (status, body) = start(&app, "alice", "", Value::Null).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("item_id"),
        "{body}"
    );
    let (status, body) = send(&app, "alice", &id, "  ", None).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content"),
        "{body}"
    );
    assert_eq!(get(&app, "alice", "not-a-uuid").await.0, 404);
    let unauthenticated = app
        .http
        .get(format!("{}/api/v1/chat/sessions", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    app.cleanup().await;
}
both_modes!(chat_private, chat_sessions_are_private);

async fn chat_falls_back_before_the_first_token(mode: Mode) {
    let fake = FakeProviders::start().await;
    let Some(app) = app(mode, &env(&fake, &["openai", "groq"], &[])).await else {
        return;
    };
    fake.set_reply("groq", "Apples are usually red or green.");
    fake.push_fault("openai", Fault::status("openai", 503));
    let id = started(&app, "u1", "word:apple").await;
    let (status, events) = send_sse(&app, "u1", &id, "colour?", None).await;
    assert_eq!(status, 200);
    let (last, stored) = events.last().unwrap();
    assert_eq!(last, "message", "{events:?}");
    assert_eq!(joined_deltas(&events), "Apples are usually red or green.");
    assert_eq!(stored["message"]["provider"], "groq");
    assert_eq!(fake.request_count("openai"), 1);
    // The fallback got the same history: system prompt with the item context, the question.
    let body = fake.last_request("groq").unwrap().body;
    assert_eq!(body["stream"], true);
    let messages = body["messages"].as_array().unwrap();
    assert!(
        messages[0]["content"].as_str().unwrap().contains("a fruit"),
        "{body}"
    );
    assert_eq!(messages.last().unwrap()["content"], "colour?");
    // Usage rows as for tasks.
    let mut rows = Value::Null;
    for _ in 0..50 {
        rows = app.get("u1", "/api/v1/usage").await.1;
        if rows.to_string().contains("groq") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rows.to_string().contains("chat"), "{rows}");
    app.cleanup().await;
}
both_modes!(chat_fallback, chat_falls_back_before_the_first_token);

async fn chat_broken_stream_is_not_stored_and_a_retry_replaces_it(mode: Mode) {
    let fake = FakeProviders::start().await;
    let Some(app) = app(mode, &env(&fake, &["openai", "groq"], &[])).await else {
        return;
    };
    fake.set_reply("openai", "one two three four five six");
    fake.push_fault("openai", Fault::CutStream { after_tokens: 3 });
    let id = started(&app, "u1", "word:apple").await;
    let (status, events) = send_sse(&app, "u1", &id, "count?", Some("q-1")).await;
    assert_eq!(status, 200);
    let (last, error) = events.last().unwrap();
    assert_eq!(last, "error", "{events:?}");
    assert_eq!(error["code"], "stream_broken");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("idempotency_key"),
        "{error}"
    );
    assert_eq!(joined_deltas(&events), "one two three ");
    assert_eq!(
        fake.request_count("groq"),
        0,
        "no fallback after the first token"
    );
    let (_, s) = get(&app, "u1", &id).await;
    assert_eq!(s["message_count"], 0, "nothing stored: {s}");

    let (status, answer) = send(&app, "u1", &id, "count?", Some("q-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["message"]["content"], "one two three four five six");
    assert_eq!(answer["replayed"], false);
    let (status, again) = send(&app, "u1", &id, "count?", Some("q-1")).await;
    assert_eq!(status, 200);
    assert_eq!(again["replayed"], true);
    assert_eq!(
        again["message"]["message_id"],
        answer["message"]["message_id"]
    );
    assert_eq!(
        fake.request_count("openai"),
        2,
        "a stored turn is not asked again"
    );
    let (_, s) = get(&app, "u1", &id).await;
    assert_eq!(s["message_count"], 2, "one turn: {s}");
    app.cleanup().await;
}
both_modes!(
    chat_broken_stream,
    chat_broken_stream_is_not_stored_and_a_retry_replaces_it
);

async fn chat_messages_to_one_session_do_not_interleave(mode: Mode) {
    let fake = FakeProviders::start().await;
    let Some(app) = app(mode, &env(&fake, &["openai"], &[])).await else {
        return;
    };
    fake.set_reply("openai", "a slow answer in several words");
    fake.set_chunk_delay(Duration::from_millis(60));
    let id = started(&app, "u1", "word:apple").await;
    let (a, b) = tokio::join!(
        send(&app, "u1", &id, "first?", None),
        send(&app, "u1", &id, "second?", None)
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let refused = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(refused["error"]["code"], "turn_in_progress");
    let (_, s) = get(&app, "u1", &id).await;
    assert_eq!(s["message_count"], 2);
    // Another user's sessions are not held up.
    let other = started(&app, "u2", "word:apple").await;
    assert_eq!(send(&app, "u2", &other, "mine?", None).await.0, 200);
    app.cleanup().await;
}
both_modes!(
    chat_serialised,
    chat_messages_to_one_session_do_not_interleave
);

async fn chat_history_is_trimmed_to_the_context_window(mode: Mode) {
    let fake = FakeProviders::start().await;
    let vars = env(
        &fake,
        &["openai"],
        &[
            ("CHAT_CONTEXT_TOKENS", "600"),
            ("CHAT_MAX_ANSWER_TOKENS", "100"),
        ],
    );
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    fake.set_reply("openai", &"word ".repeat(200));
    let id = started(&app, "u1", "word:apple").await;
    for i in 0..4 {
        let (status, body) = send(&app, "u1", &id, &format!("question {i}"), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let body = fake.last_request("openai").unwrap().body;
    let messages = body["messages"].as_array().unwrap();
    // System prompt + kept turns + the question; 3 earlier turns (6 messages) do not fit.
    assert!(messages.len() < 1 + 6 + 1, "{}", messages.len());
    assert!(
        messages[0]["content"].as_str().unwrap().contains("a fruit"),
        "system kept"
    );
    assert_eq!(messages[1]["role"], "user", "whole turns only");
    assert_eq!(messages.last().unwrap()["content"], "question 3");
    assert!(
        !body.to_string().contains("question 0"),
        "the oldest turn went first"
    );
    app.cleanup().await;
}
both_modes!(chat_trimmed, chat_history_is_trimmed_to_the_context_window);

async fn chat_limits_and_expiry(mode: Mode) {
    let vars = [
        ("CHAT_MAX_MESSAGES", "2"),
        ("CHAT_USER_MESSAGE_RATE", "2/min"),
        ("CHAT_IDLE_TIMEOUT", "1s"),
        ("CHAT_EXPIRY_INTERVAL", "100ms"),
    ];
    let Some(app) = spawn_app(mode, &vars).await else {
        return;
    };
    let id = started(&app, "u1", "word:apple").await;
    assert_eq!(send(&app, "u1", &id, "one?", None).await.0, 200);
    let (status, body) = send(&app, "u1", &id, "two?", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "max_messages_reached");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 2")
    );

    let other = started(&app, "u1", "word:pear").await;
    assert_eq!(send(&app, "u1", &other, "one?", None).await.0, 200);
    let third = started(&app, "u1", "word:plum").await;
    let (status, body) = send(&app, "u1", &third, "one?", None).await;
    assert_eq!(status, 429, "{body}");

    // Idle sessions expire; an expired session takes no messages, and the item gets a new one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, s) = get(&app, "u1", &third).await;
        if s["status"] == "expired" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = send(&app, "u1", &third, "late?", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "session_not_active");
    let (status, fresh) = start(&app, "u1", "word:plum", Value::Null).await;
    assert_eq!(status, 201);
    assert_ne!(fresh["session_id"], third.as_str());
    app.cleanup().await;
}
both_modes!(chat_limits, chat_limits_and_expiry);

async fn chat_answers_reach_the_notification_streams(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    // Some task events first, so the stream's last id is not 0.
    let (status, task) = app.submit("u1", crate::notify_support::echo(0)).await;
    assert_eq!(status, 202, "{task}");
    app.wait_terminal(
        "u1",
        task["task_id"].as_str().unwrap(),
        Duration::from_secs(10),
    )
    .await;
    // A second tab: the user's SSE notification stream, opened before the question.
    let mut tab = crate::notify_support::sse(&app, "u1", "", None).await;
    let first = crate::notify_support::next_sse(&mut tab).await;
    assert_eq!(first.event, "subscribed");
    assert_ne!(first.id, "0");
    let mut other = crate::notify_support::sse(&app, "u2", "", None).await;
    let id = started(&app, "u1", "word:apple").await;
    let (status, answer) = send(&app, "u1", &id, "seen elsewhere?", None).await;
    assert_eq!(status, 200, "{answer}");
    let mut text = String::new();
    loop {
        let e = crate::notify_support::next_sse(&mut tab).await;
        // The SSE last-event-id stays the subscription's: live-only events carry no id.
        assert_eq!(e.id, first.id, "{e:?}");
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(v["data"]["session_id"], id.as_str());
        match e.event.as_str() {
            "ChatDelta" => text.push_str(v["data"]["text"].as_str().unwrap()),
            "ChatDone" => {
                assert_eq!(
                    v["data"]["message"]["content"],
                    answer["message"]["content"]
                );
                break;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(text, answer["message"]["content"].as_str().unwrap());
    // Another user's stream sees none of it.
    let first = crate::notify_support::next_sse(&mut other).await;
    assert_eq!(first.event, "subscribed");
    let quiet = tokio::time::timeout(
        Duration::from_millis(300),
        futures::StreamExt::next(&mut other),
    )
    .await;
    assert!(quiet.is_err(), "{quiet:?}");
    app.cleanup().await;
}
both_modes!(
    chat_notifications,
    chat_answers_reach_the_notification_streams
);
