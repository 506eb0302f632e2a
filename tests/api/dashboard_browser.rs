//! The dashboard in real headless Chromium: it signs in with an admin token given once in the
//! URL (which leaves the address bar), shows the completed count rising as tasks complete,
//! requeues a dead letter by a click and an accepted confirmation, and refuses a user's
//! token. A screenshot goes to `target/dashboard.png` for a person to look at.

use std::time::Duration;

use ai_integration_service::auth::Role;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::browser::{Browser, chromium_available};
use crate::helpers::{Mode, spawn_app};
use crate::notify_support::echo;

/// Waits until `expr` evaluates to true in the page; panics with the page's text after
/// `within`.
async fn wait_for(browser: &mut Browser, what: &str, expr: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if browser.eval(expr).await == Value::Bool(true) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let text = browser.eval("document.body.innerText").await;
            panic!("{what}: not seen in time; the page shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the DevTools event `method` (recorded by earlier calls, or read now).
async fn next_event(browser: &mut Browser, method: &str) -> Value {
    if let Some(i) = browser.events.iter().position(|e| e["method"] == method) {
        return browser.events.remove(i);
    }
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), browser.page.next())
            .await
            .unwrap_or_else(|_| panic!("no {method}"))
            .expect("DevTools open")
            .expect("frame");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["method"] == method {
                return v;
            }
            browser.events.push(v);
        }
    }
}

/// The number a tile shows (`1,234` -> 1234).
async fn tile(browser: &mut Browser, id: &str) -> u64 {
    let text = browser
        .eval(&format!("document.getElementById('{id}').textContent"))
        .await;
    text.as_str()
        .unwrap_or("")
        .replace(',', "")
        .parse()
        .unwrap_or(0)
}

/// Standard base64 (the screenshot DevTools returns), without a crate for it.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (u32::from(value(*c)) << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_counts_requeues_and_refuses_users() {
    if !chromium_available() {
        return;
    }
    let Some(app) = spawn_app(Mode::Embedded, &[("JOB_QUEUE_MAX_RETRIES", "0")]).await else {
        return;
    };
    // A dead letter: echo fails its first attempt, and no retry is allowed.
    let (_, failed) = app
        .submit(
            "carol",
            json!({"type": "echo", "payload": {"text": "flaky", "fail_times": 1}}),
        )
        .await;
    let dead = failed["task_id"].as_str().unwrap().to_owned();
    let t = app
        .wait_terminal("carol", &dead, Duration::from_secs(10))
        .await;
    assert_eq!(t["status"], "failed", "{t}");

    let admin = app.token_with("ops", Role::Admin, Duration::from_secs(600));
    let mut browser = Browser::launch().await;
    browser.call("Page.enable", json!({})).await;
    browser
        .call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1800, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
    let url = format!("{}/dashboard?token={admin}", app.base);
    browser.call("Page.navigate", json!({"url": url})).await;
    wait_for(
        &mut browser,
        "signed in",
        "document.body.dataset.state === 'live'",
        Duration::from_secs(20),
    )
    .await;
    let address = browser.eval("location.href").await;
    assert!(
        !address.as_str().unwrap_or("").contains(&admin),
        "the token stayed in the address bar: {address}"
    );
    assert_eq!(browser.eval("location.search").await, "");

    // The completed count follows tasks as they complete.
    wait_for(
        &mut browser,
        "a first frame",
        "document.querySelectorAll('#queues tbody tr').length > 0",
        Duration::from_secs(10),
    )
    .await;
    let before = tile(&mut browser, "total-completed").await;
    for _ in 0..3 {
        assert_eq!(app.submit("alice", echo(5)).await.0, 202);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tile(&mut browser, "total-completed").await < before + 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "completed stayed at {}",
            tile(&mut browser, "total-completed").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The dead letter is listed; requeue it by clicking and accepting the confirmation.
    let row = format!("#dead-letters tr[data-task='{dead}'] .dl-requeue");
    wait_for(
        &mut browser,
        "the dead letter listed",
        &format!("document.querySelector(\"{row}\") !== null"),
        Duration::from_secs(10),
    )
    .await;
    // Draw the charts with some history before the picture.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let shot = browser
        .call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        )
        .await;
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_owned());
    let path = std::path::Path::new(&target).join("dashboard.png");
    std::fs::write(&path, &png).expect("screenshot written");
    println!("dashboard screenshot: {}", path.display());

    // Clicked from a timer: `confirm` blocks the page until DevTools answers it.
    browser
        .eval(&format!(
            "setTimeout(() => document.querySelector(\"{row}\").click(), 0); true"
        ))
        .await;
    let dialog = next_event(&mut browser, "Page.javascriptDialogOpening").await;
    assert_eq!(dialog["params"]["type"], "confirm", "{dialog}");
    assert!(
        dialog["params"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&dead),
        "{dialog}"
    );
    browser
        .call("Page.handleJavaScriptDialog", json!({"accept": true}))
        .await;
    // Still `failed` until the requeue lands; then it runs again and completes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, t) = app.get("carol", &format!("/api/v1/tasks/{dead}")).await;
        if t["status"] == "completed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not requeued and run again: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(
        &mut browser,
        "the requeued task leaves the list",
        &format!("document.querySelector(\"{row}\") === null"),
        Duration::from_secs(10),
    )
    .await;

    // A user's token is refused with a clear message.
    let user = app.token("alice");
    browser.eval("sessionStorage.clear(); true").await;
    let url = format!("{}/dashboard?token={user}", app.base);
    browser.call("Page.navigate", json!({"url": url})).await;
    wait_for(
        &mut browser,
        "the user's token refused",
        "document.body.dataset.state === 'refused'",
        Duration::from_secs(20),
    )
    .await;
    let message = browser
        .eval("document.getElementById('signin-msg').textContent")
        .await;
    assert!(
        message
            .as_str()
            .unwrap_or("")
            .contains("not an admin token"),
        "{message}"
    );
    assert_eq!(
        browser.eval("document.getElementById('main').hidden").await,
        true
    );
    app.cleanup().await;
}
