//! `chatload`: the chat targets of issue 22, against a running service whose only chat
//! provider is this program's fake (`OPENAI_COMPAT_BASE_URL=http://127.0.0.1:<--fake-port>`,
//! `CHAT_USER_MESSAGE_RATE=off`).
//!
//! 1. **First token.** `--conversations` users each start a session and send `--turns`
//!    questions one after another, all conversations at once, asking for SSE. For each answer,
//!    the latency the service adds to the first token is the client's first delta minus the
//!    moment the fake wrote its first token (one process, one clock). Every answer's deltas
//!    must join to the fake's words in order; anything else counts as lost or out of order.
//! 2. **Open streams.** `--open-streams` users each send one question whose answer the fake
//!    holds open after its first token; once every stream has its first delta, the server's
//!    RSS growth over them is the memory per open chat stream. Then the answers finish.
//!
//! CPU pressure (`/proc/pressure/cpu`, load average) is printed beside the figures.

mod fake;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ai_integration_service::auth::{JwtKeys, Role};
use ai_integration_service::config::Secret;
use ai_integration_service::domain::UserId;
use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use fake::Fake;

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// The service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The service's JWT secret, to mint users' tokens.
    #[arg(long, env = "JWT_SECRET")]
    jwt_secret: String,
    /// Where the fake provider listens (the service's `OPENAI_COMPAT_BASE_URL`).
    #[arg(long, default_value_t = 18_181)]
    fake_port: u16,
    /// The service's process id, for its RSS.
    #[arg(long)]
    server_pid: u32,
    /// Concurrent streaming conversations of phase 1.
    #[arg(long, default_value_t = 200)]
    conversations: usize,
    /// Questions per conversation.
    #[arg(long, default_value_t = 5)]
    turns: usize,
    /// Words per answer.
    #[arg(long, default_value_t = 20)]
    words: usize,
    /// Pause between the fake's words, in milliseconds.
    #[arg(long, default_value_t = 20)]
    word_delay_ms: u64,
    /// Open chat streams of phase 2 (0 skips it).
    #[arg(long, default_value_t = 1000)]
    open_streams: usize,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

fn pressure() -> String {
    let psi = std::fs::read_to_string("/proc/pressure/cpu").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "cpu pressure: {} | loadavg: {}",
        psi.lines().next().unwrap_or("n/a"),
        load.trim()
    )
}

/// What one answer showed the client.
struct Answer {
    first_delta: Option<Instant>,
    text: String,
    ended_with: String,
}

/// Sends `question` and reads the SSE answer; `first` is told when the first delta arrives.
async fn ask(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: &str,
    question: &str,
    first: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) -> anyhow::Result<Answer> {
    let resp = http
        .post(format!("{base}/api/v1/chat/sessions/{session}/messages"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .json(&json!({"content": question}))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!(
            "{}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let mut bytes = resp.bytes_stream();
    let mut buffer = String::new();
    let mut answer = Answer {
        first_delta: None,
        text: String::new(),
        ended_with: String::new(),
    };
    while let Some(chunk) = bytes.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(cut) = buffer.find("\n\n") {
            let block: String = buffer.drain(..cut + 2).collect();
            let mut event = "";
            let mut data = "";
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim();
                }
            }
            match event {
                "delta" => {
                    if answer.first_delta.is_none() {
                        answer.first_delta = Some(Instant::now());
                        if let Some(f) = &first {
                            let _ = f.send(());
                        }
                    }
                    let v: Value = serde_json::from_str(data)?;
                    answer.text.push_str(v["text"].as_str().unwrap_or_default());
                }
                "message" | "error" => answer.ended_with = format!("{event} {data}"),
                _ => {}
            }
        }
    }
    Ok(answer)
}

async fn start_session(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    item: &str,
) -> anyhow::Result<String> {
    let body: Value = http
        .post(format!("{base}/api/v1/chat/sessions"))
        .bearer_auth(token)
        .json(&json!({"item_id": item}))
        .send()
        .await?
        .json()
        .await?;
    body["session_id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no session: {body}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let keys = JwtKeys::new(&Secret::new(args.jwt_secret.trim().to_owned()));
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let users = args.conversations.max(args.open_streams);
    let tokens: Vec<String> = (0..users)
        .map(|k| {
            let user = UserId::parse(&format!("chatload-{run}-{k}"))?;
            Ok(keys.issue(&user, Role::User, Duration::from_secs(3600))?)
        })
        .collect::<anyhow::Result<_>>()?;
    let (hold, _) = tokio::sync::watch::channel(false);
    let fake = Arc::new(Fake {
        words: args.words,
        word_delay: Duration::from_millis(args.word_delay_ms),
        first_token: Default::default(),
        hold,
    });
    fake::serve(fake.clone(), args.fake_port).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(users)
        .tcp_nodelay(true)
        .build()?;
    let tokens = Arc::new(tokens);
    let expected = fake::answer(args.words);

    // Phase 1.
    eprintln!(
        "chatload: {} conversations x {} turns",
        args.conversations, args.turns
    );
    eprintln!("chatload: before: {}", pressure());
    let mut added = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let bad = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut convs = tokio::task::JoinSet::new();
    for c in 0..args.conversations {
        let (http, tokens, base, fake, expected, bad) = (
            http.clone(),
            tokens.clone(),
            args.url.clone(),
            fake.clone(),
            expected.clone(),
            bad.clone(),
        );
        let turns = args.turns;
        convs.spawn(async move {
            let token = &tokens[c];
            let session = start_session(&http, &base, token, &format!("bench-{c}")).await?;
            let mut samples = Vec::new();
            for t in 0..turns {
                let tag = format!("c{c}t{t}");
                let a = ask(&http, &base, token, &session, &format!("{tag} how?"), None).await?;
                let provider_first = fake.first_token.lock().unwrap().get(&tag).copied();
                if a.text != expected || !a.ended_with.starts_with("message") {
                    bad.fetch_add(1, Ordering::Relaxed);
                    eprintln!("chatload: {tag}: got {:?}, ended {}", a.text, a.ended_with);
                }
                if let (Some(client), Some(provider)) = (a.first_delta, provider_first) {
                    samples.push(client.saturating_duration_since(provider));
                }
            }
            anyhow::Ok(samples)
        });
    }
    let mut failures = 0;
    while let Some(r) = convs.join_next().await {
        match r? {
            Ok(samples) => {
                for s in samples {
                    added.record((s.as_micros() as u64).max(1))?;
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("chatload: conversation failed: {e:#}");
            }
        }
    }
    let us = |q: f64| added.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "first token: {} answers in {:.1}s; added latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; answers wrong or incomplete: {}; conversations failed: {failures}",
        added.len(),
        started.elapsed().as_secs_f64(),
        us(0.5),
        us(0.9),
        us(0.99),
        added.max() as f64 / 1000.0,
        bad.load(Ordering::Relaxed),
    );
    println!("during/after phase 1: {}", pressure());

    // Phase 2.
    if args.open_streams > 0 {
        let mut sessions = Vec::with_capacity(args.open_streams);
        for k in 0..args.open_streams {
            sessions.push(start_session(&http, &args.url, &tokens[k], "held").await?);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = rss_kib(args.server_pid)?;
        fake.hold.send_replace(true);
        let (first_tx, mut first_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut streams = tokio::task::JoinSet::new();
        for (k, session) in sessions.into_iter().enumerate() {
            let (http, tokens, base, first_tx) = (
                http.clone(),
                tokens.clone(),
                args.url.clone(),
                first_tx.clone(),
            );
            streams.spawn(async move {
                ask(
                    &http,
                    &base,
                    &tokens[k],
                    &session,
                    &format!("h{k} hold"),
                    Some(first_tx),
                )
                .await
            });
        }
        let mut open = 0;
        while open < args.open_streams {
            match tokio::time::timeout(Duration::from_secs(60), first_rx.recv()).await {
                Ok(Some(())) => open += 1,
                _ => break,
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let during = rss_kib(args.server_pid)?;
        fake.hold.send_replace(false);
        let mut finished = 0;
        while let Some(r) = streams.join_next().await {
            if matches!(r, Ok(Ok(ref a)) if a.ended_with.starts_with("message")) {
                finished += 1;
            }
        }
        println!(
            "open streams: {open} open at once; server RSS {before} KiB -> {during} KiB: {:.1} KiB per open chat stream; {finished} finished",
            during.saturating_sub(before) as f64 / open.max(1) as f64
        );
        println!("after phase 2: {}", pressure());
    }
    Ok(())
}
