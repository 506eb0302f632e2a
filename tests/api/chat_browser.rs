//! The page's chat panel in real headless Chromium: a question typed, the answer streaming in
//! (seen growing piece by piece), then stored, with no provider key (the development provider).

use std::time::Duration;

use serde_json::json;

use crate::browser::{Browser, chromium_available};
use crate::helpers::{Mode, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_streams_a_chat_answer() {
    if !chromium_available() {
        return;
    }
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let token = app.token("browser-user");
    let mut browser = Browser::launch().await;
    let url = format!("{}/?token={token}", app.base);
    browser.call("Page.navigate", json!({"url": url})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while browser
        .eval("document.getElementById('chat-ask') !== null")
        .await
        != true
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page did not load"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser
        .eval(
            "document.getElementById('chat-item').value = 'word:kiwi'; \
             document.getElementById('chat-question').value = 'Is it sweet?'; \
             document.getElementById('chat-ask').click(); true",
        )
        .await;
    // Watch the answer grow: more than one partial length before it is complete.
    let mut lengths = Vec::new();
    let done = loop {
        let state = browser
            .eval(
                "[document.body.dataset.chatDone || '', \
                 document.getElementById('chat-answer').textContent]",
            )
            .await;
        let text = state[1].as_str().unwrap_or_default().to_owned();
        if lengths.last() != Some(&text.len()) {
            lengths.push(text.len());
        }
        let done = state[0].as_str().unwrap_or_default().to_owned();
        if !done.is_empty() {
            break (done, text);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer: {:?}",
            browser.eval("document.body.innerHTML").await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(done.0, "answered");
    assert!(done.1.contains("Is it sweet?"), "{}", done.1);
    let partial = lengths
        .iter()
        .filter(|&&l| l > 0 && l < done.1.len())
        .count();
    assert!(
        partial >= 2,
        "the answer streamed in: lengths seen {lengths:?}"
    );
    let status = browser
        .eval("document.getElementById('chat-status').textContent")
        .await;
    assert_eq!(status, "answered by echo");
    // Stored: the session holds the question and its answer.
    let (_, list) = app.get("browser-user", "/api/v1/chat/sessions").await;
    let session = list["sessions"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, s) = app
        .get("browser-user", &format!("/api/v1/chat/sessions/{session}"))
        .await;
    assert_eq!(s["item_id"], "word:kiwi");
    assert_eq!(s["messages"][1]["content"], done.1.as_str());
    app.cleanup().await;
}
