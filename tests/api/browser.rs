//! The page at `/` in real headless Chromium: it submits an echo task and shows it completing
//! from the live events, over SSE and over WebSocket, opening each stream with a one-time
//! ticket (never the JWT in a URL) and reconnecting with a fresh one when a stream is lost.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Mode, spawn_app};
use crate::notify_support::Ws;
use crate::support::in_ci;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium driven over the DevTools protocol (real time, unlike `--dump-dom` with
/// virtual time, which can finish before the server has run the task).
pub(crate) struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    pub(crate) page: Ws,
    next_id: u64,
    /// DevTools events received so far (`Network.*` once [`Self::watch_network`] ran).
    pub(crate) events: Vec<Value>,
}

impl Browser {
    pub(crate) async fn launch() -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium starts");
        // Chromium writes its DevTools port into the profile once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(port) = text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromium did not open DevTools"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let targets: Vec<Value> = loop {
            let list = reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await;
            if let Ok(resp) = list
                && let Ok(targets) = resp.json::<Vec<Value>>().await
                && targets.iter().any(|t| t["type"] == "page")
            {
                break targets;
            }
            assert!(tokio::time::Instant::now() < deadline, "no page target");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let page_url = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("page target")
            .to_owned();
        let (page, _) = tokio_tungstenite::connect_async(page_url)
            .await
            .expect("DevTools connects");
        Self {
            _child: child,
            _profile: profile,
            page,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// Calls a DevTools method and returns its result.
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.page
            .send(Message::Text(msg.into()))
            .await
            .expect("send");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.page.next())
                .await
                .expect("DevTools answers")
                .expect("DevTools open")
                .expect("frame");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
                if v.get("method").is_some() {
                    self.events.push(v);
                }
            }
        }
    }

    /// Records the page's requests from now on (see [`Self::request_urls`]).
    async fn watch_network(&mut self) {
        self.call("Network.enable", json!({})).await;
    }

    /// The URL of every request and WebSocket the page opened so far, in order.
    fn request_urls(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str() {
                Some("Network.requestWillBeSent") => e["params"]["request"]["url"].as_str(),
                Some("Network.webSocketCreated") => e["params"]["url"].as_str(),
                _ => None,
            })
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the page shows its task's final status; panics after `within`.
    async fn wait_final(&mut self, what: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let done = self
                .eval("document.body && document.body.dataset.final")
                .await;
            if done == "completed" {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let html = self.eval("document.body.innerHTML").await;
                panic!("{what}: the page did not show the task completing:\n{html}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Evaluates a JavaScript expression in the page.
    pub(crate) async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }
}

/// Whether Chromium is here; in CI it must be.
pub(crate) fn chromium_available() -> bool {
    if std::path::Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        !in_ci(),
        "{CHROMIUM} is missing; CI installs Debian's chromium package"
    );
    eprintln!("SKIPPED: {CHROMIUM} not installed");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_task_completing_over_sse_and_websocket() {
    if !chromium_available() {
        return;
    }
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let token = app.token("browser-user");
    let mut browser = Browser::launch().await;
    browser.watch_network().await;
    for transport in ["sse", "ws"] {
        let url = format!(
            "{}/?token={token}&transport={transport}&autorun=1",
            app.base
        );
        browser.call("Page.navigate", json!({"url": url})).await;
        browser.wait_final(transport, Duration::from_secs(30)).await;
        let log = browser
            .eval("document.getElementById('events').textContent")
            .await;
        let log = log.as_str().unwrap_or_default().to_owned();
        for kind in ["TaskCreated", "TaskStarted", "TaskCompleted"] {
            assert!(log.contains(kind), "{transport}: {kind} missing from {log}");
        }
        let status = browser
            .eval("document.getElementById('status').textContent")
            .await;
        assert_eq!(status, "completed");
        let conn = browser
            .eval("document.getElementById('conn').textContent")
            .await;
        let expected = if transport == "ws" {
            "WebSocket"
        } else {
            "SSE"
        };
        assert!(
            conn.as_str().unwrap_or("").contains(expected),
            "{transport}: {conn}"
        );
        let address = browser.eval("location.href").await;
        assert!(
            !address.as_str().unwrap_or("").contains(&token),
            "{transport}: the token stayed in the address bar: {address}"
        );
    }
    assert_streams_used_tickets(&browser.request_urls(), &token, 2);
    app.cleanup().await;
}

/// Every stream the page opened had a ticket and no token (at least `streams` of them), and
/// no URL but the page's own carried the token.
fn assert_streams_used_tickets(urls: &[String], token: &str, streams: usize) -> Vec<String> {
    let opened: Vec<String> = urls
        .iter()
        .filter(|u| u.contains("/api/v1/events?") || u.contains("/ws?"))
        .cloned()
        .collect();
    assert!(opened.len() >= streams, "streams opened: {opened:?}");
    for u in &opened {
        assert!(u.contains("ticket="), "a stream without a ticket: {u}");
        assert!(
            !u.contains("access_token"),
            "a stream with access_token: {u}"
        );
    }
    let minted = urls
        .iter()
        .filter(|u| u.ends_with("/api/v1/events/ticket"))
        .count();
    assert!(minted >= opened.len(), "a ticket per stream: {urls:?}");
    for u in urls.iter().filter(|u| u.contains(token)) {
        let page = u.contains("/?token=");
        assert!(page, "the token in a URL other than the page's own: {u}");
    }
    opened
}

/// A stream the server drops (here: a restart) is reopened by the page with a fresh ticket,
/// from the last event id it saw, and the task's events still show once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_with_a_fresh_ticket() {
    if !chromium_available() {
        return;
    }
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let token = app.token("browser-user");
    let mut browser = Browser::launch().await;
    browser.watch_network().await;
    let url = format!("{}/?token={token}&transport=sse", app.base);
    browser.call("Page.navigate", json!({"url": url})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while browser.eval("typeof run").await != "function" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser
        .eval("document.getElementById('delay').value = 3000; document.getElementById('run').click(); 1")
        .await;
    loop {
        let log = browser
            .eval("document.getElementById('events').textContent")
            .await;
        if log.as_str().unwrap_or("").contains("TaskStarted") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no TaskStarted: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let app = app.restart_on_same_port().await;
    browser
        .wait_final("reconnect", Duration::from_secs(60))
        .await;

    let opened = assert_streams_used_tickets(&browser.request_urls(), &token, 2);
    assert!(
        opened[1..].iter().all(|u| u.contains("since=")),
        "reconnections resume from the last id: {opened:?}"
    );
    let tickets: std::collections::HashSet<&str> = opened
        .iter()
        .filter_map(|u| u.split("ticket=").nth(1))
        .map(|t| t.split('&').next().unwrap_or(t))
        .collect();
    assert_eq!(tickets.len(), opened.len(), "a fresh ticket per connection");
    let log = browser
        .eval("document.getElementById('events').textContent")
        .await;
    let ids: Vec<u64> = log
        .as_str()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "events once each, in order: {log}"
    );
    assert!(
        log.as_str().unwrap_or("").contains("TaskCompleted"),
        "{log}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_fills_the_menu_pipeline_as_results_arrive() {
    if !chromium_available() {
        return;
    }
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let token = app.token("browser-user");
    let mut browser = Browser::launch().await;
    let url = format!("{}/?token={token}&pipeline=1", app.base);
    browser.call("Page.navigate", json!({"url": url})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = browser
            .eval("document.body && document.body.dataset.pipeline")
            .await;
        if done == "completed" {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let html = browser.eval("document.body.innerHTML").await;
            panic!("the pipeline view did not complete:\n{html}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cell = browser
        .eval("document.getElementById('cell-m1-translation').textContent")
        .await;
    assert_eq!(cell, "[development] translation: 唐揚げ");
    let statuses = browser
        .eval("[...document.querySelectorAll('#cells td[data-status]')].map(c => c.dataset.status).join(',')")
        .await;
    let statuses = statuses.as_str().unwrap_or_default();
    assert_eq!(
        statuses.split(',').filter(|s| *s == "completed").count(),
        21,
        "{statuses}"
    );
    // The image stages show pictures: the development provider's tiles.
    for stage in ["image_search", "generated_image"] {
        let src = browser
            .eval(&format!(
                "(document.querySelector('#cell-m1-{stage} img') || {{}}).src || ''"
            ))
            .await;
        let src = src.as_str().unwrap_or_default();
        assert!(
            src.starts_with("data:image/svg+xml;base64,"),
            "{stage}: {src}"
        );
    }
    app.cleanup().await;
}
