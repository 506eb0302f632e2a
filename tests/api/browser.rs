//! The page at `/` in real headless Chromium: it submits an echo task and shows it completing
//! from the live events, over SSE and over WebSocket.

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
struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    page: Ws,
    next_id: u64,
}

impl Browser {
    async fn launch() -> Self {
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
        }
    }

    /// Calls a DevTools method and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
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
            }
        }
    }

    /// Evaluates a JavaScript expression in the page.
    async fn eval(&mut self, expr: &str) -> Value {
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
fn chromium_available() -> bool {
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
    for transport in ["sse", "ws"] {
        let url = format!(
            "{}/?token={token}&transport={transport}&autorun=1",
            app.base
        );
        browser.call("Page.navigate", json!({"url": url})).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let done = browser
                .eval("document.body && document.body.dataset.final")
                .await;
            if done == "completed" {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let html = browser.eval("document.body.innerHTML").await;
                panic!("{transport}: the page did not show the task completing:\n{html}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
    }
    app.cleanup().await;
}
