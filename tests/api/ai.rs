//! AI providers end to end: the real server routes tasks to fake provider servers that speak
//! each provider's wire format (tests/support/fake_providers.rs), through breakers, rate limits,
//! budgets and the cache.

use std::time::Duration;

use ai_integration_service::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};
use crate::support::fake_providers::{FakeProviders, Fault};

/// Environment that points `providers` at the fake, plus `extra`.
pub(crate) fn env(
    fake: &FakeProviders,
    providers: &[&str],
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for p in providers {
        let (key_var, url_var) = match *p {
            "openai" => ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
            "groq" => ("GROQ_API_KEY", "GROQ_BASE_URL"),
            "claude" => ("CLAUDE_API_KEY", "ANTHROPIC_BASE_URL"),
            "gemini" => ("GEMINI_API_KEY", "GEMINI_BASE_URL"),
            "unsplash" => ("UNSPLASH_API_KEY", "UNSPLASH_BASE_URL"),
            "compat" => ("OPENAI_COMPAT_API_KEY", "OPENAI_COMPAT_BASE_URL"),
            other => panic!("unknown provider {other}"),
        };
        vars.push((key_var.to_owned(), fake.key(p)));
        vars.push((url_var.to_owned(), fake.base_url(p)));
    }
    vars.push(("AI_REQUEST_TIMEOUT".into(), "2s".into()));
    for (k, v) in extra {
        vars.push(((*k).to_owned(), (*v).to_owned()));
    }
    vars
}

pub(crate) async fn app(mode: Mode, vars: &[(String, String)]) -> Option<TestApp> {
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    spawn_app(mode, &refs).await
}

/// Submits a task as `user` and waits for its end.
pub(crate) async fn run(app: &TestApp, user: &str, body: Value) -> Value {
    let (status, task) = app.submit(user, body).await;
    assert_eq!(status, 202, "{task}");
    let id = task["task_id"].as_str().unwrap().to_owned();
    app.wait_terminal(user, &id, Duration::from_secs(20)).await
}

/// The provider attempts of a task, as (provider, outcome).
pub(crate) async fn attempts(app: &TestApp, user: &str, task: &Value) -> Vec<(String, String)> {
    let id = task["task_id"].as_str().unwrap();
    // Attempts are written in the background; give the writer a moment.
    let mut last = Vec::new();
    for _ in 0..50 {
        let (status, body) = app.get(user, &format!("/api/v1/tasks/{id}/attempts")).await;
        assert_eq!(status, 200, "{body}");
        last = body["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["provider"].as_str().unwrap().to_owned(),
                    a["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if last
            .last()
            .is_some_and(|(_, o)| o == "ok" || o == "non_retryable")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    last
}

async fn admin_get(app: &TestApp, path: &str) -> Value {
    let token = app.token_with("ops", Role::Admin, Duration::from_secs(600));
    let resp = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn summarize_on_the_first_provider_with_usage_and_cost(mode: Mode) {
    let fake = FakeProviders::start().await;
    fake.set_reply("groq", r#"{"summary": "Short.", "key_points": ["one"]}"#);
    let vars = env(
        &fake,
        &["groq", "claude"],
        &[("GROQ_PRICE", "input=1,output=2")],
    );
    let Some(app) = app(mode, &vars).await else {
        return;
    };

    let text = "Rust is a language. ".repeat(20);
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": text, "length": "short"}}),
    )
    .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"]["summary"], "Short.");
    assert_eq!(task["result"]["provider"], "groq");
    assert_eq!(task["result"]["method"], "ai");

    // What went over the wire: Groq's OpenAI format, our key, a system prompt, streaming.
    let sent = fake.last_request("groq").unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {}", fake.key("groq")))
    );
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["messages"][0]["role"], "system");
    assert!(
        sent.body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("Rust is a language")
    );
    assert_eq!(fake.request_count("claude"), 0);

    assert_eq!(
        attempts(&app, "ann", &task).await,
        [("groq".to_owned(), "ok".to_owned())]
    );
    let (status, usage) = app.get("ann", "/api/v1/usage").await;
    assert_eq!(status, 200, "{usage}");
    let row = &usage["usage"][0];
    assert_eq!(
        (row["provider"].as_str(), row["type"].as_str()),
        (Some("groq"), Some("summarize"))
    );
    assert!(row["input_tokens"].as_i64().unwrap() > 0, "{usage}");
    assert!(usage["total_cost_micros"].as_i64().unwrap() > 0, "{usage}");
    // Another user sees none of it; only an admin sees everyone's.
    let (_, other) = app.get("bob", "/api/v1/usage").await;
    assert_eq!(other["usage"], json!([]));
    let (status, _) = app.get("bob", "/api/v1/usage?all=true").await;
    assert_eq!(status, 403);
    let all = admin_get(&app, "/api/v1/usage?all=true").await;
    assert_eq!(all["usage"].as_array().unwrap().len(), 1);
    let (status, _) = app
        .get(
            "bob",
            &format!(
                "/api/v1/tasks/{}/attempts",
                task["task_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(status, 404, "another user's task does not exist for them");
    app.cleanup().await;
}
both_modes!(
    summarize_on_the_first_provider_with_usage_and_cost,
    summarize_on_the_first_provider_with_usage_and_cost
);

async fn falls_back_on_retryable_and_rate_limited_failures(mode: Mode) {
    let fake = FakeProviders::start().await;
    fake.set_reply("claude", r#"{"summary": "From Claude."}"#);
    let vars = env(&fake, &["groq", "claude"], &[]);
    let Some(app) = app(mode, &vars).await else {
        return;
    };

    fake.push_fault("groq", Fault::status("groq", 503));
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "a b c"}}),
    )
    .await;
    assert_eq!(task["result"]["summary"], "From Claude.", "{task}");
    assert_eq!(
        attempts(&app, "ann", &task).await,
        [
            ("groq".into(), "retryable".into()),
            ("claude".into(), "ok".into())
        ]
    );
    let sent = fake.last_request("claude").unwrap();
    assert_eq!(sent.header("x-api-key"), Some(fake.key("claude")));
    assert_eq!(
        sent.header("anthropic-version").as_deref(),
        Some("2023-06-01")
    );

    fake.push_fault("groq", Fault::rate_limited("groq", 30));
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "d e f"}}),
    )
    .await;
    assert_eq!(task["result"]["provider"], "claude", "{task}");
    assert_eq!(
        attempts(&app, "ann", &task).await[0],
        ("groq".into(), "rate_limited".into())
    );

    // A stream cut mid-answer is a failure, never a truncated success.
    fake.push_fault("groq", Fault::CutStream { after_tokens: 2 });
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "g h i"}}),
    )
    .await;
    assert_eq!(task["result"]["summary"], "From Claude.", "{task}");
    assert_eq!(
        attempts(&app, "ann", &task).await[0],
        ("groq".into(), "retryable".into())
    );
    app.cleanup().await;
}
both_modes!(
    falls_back_on_retryable_and_rate_limited_failures,
    falls_back_on_retryable_and_rate_limited_failures
);

async fn non_retryable_fails_at_once_without_fallback(mode: Mode) {
    let fake = FakeProviders::start().await;
    let vars = env(&fake, &["groq", "claude"], &[]);
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    fake.push_fault(
        "groq",
        Fault::error("groq", 400, "messages: field required"),
    );
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "x"}}),
    )
    .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["class"], "non_retryable");
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap()
            .contains("field required"),
        "{task}"
    );
    assert_eq!(task["retry_count"], 0);
    assert_eq!(fake.request_count("claude"), 0);
    app.cleanup().await;
}
both_modes!(
    non_retryable_fails_at_once_without_fallback,
    non_retryable_fails_at_once_without_fallback
);

async fn an_open_breaker_skips_the_provider_until_reset(mode: Mode) {
    let fake = FakeProviders::start().await;
    let vars = env(
        &fake,
        &["groq", "claude"],
        &[
            ("BREAKER_FAILURE_THRESHOLD", "2"),
            ("BREAKER_OPEN_DURATION", "1h"),
        ],
    );
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    for _ in 0..2 {
        fake.push_fault("groq", Fault::status("groq", 500));
        let task = run(
            &app,
            "ann",
            json!({"type": "summarize", "payload": {"text": "x", "cache": false}}),
        )
        .await;
        assert_eq!(task["result"]["provider"], "claude", "{task}");
    }
    let calls = fake.request_count("groq");
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "y"}}),
    )
    .await;
    assert_eq!(task["result"]["provider"], "claude");
    assert_eq!(
        fake.request_count("groq"),
        calls,
        "an open breaker really skips the provider"
    );
    assert_eq!(
        attempts(&app, "ann", &task).await[0],
        ("groq".into(), "skipped_breaker".into())
    );

    let report = admin_get(&app, "/api/v1/admin/providers").await;
    let groq = report["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "groq")
        .unwrap();
    assert_eq!(groq["breaker"]["state"], "open", "{report}");
    assert_eq!(groq["calls"], 2, "{report}");
    assert_eq!(groq["skipped"], 1, "{report}");

    let token = app.token_with("ops", Role::Admin, Duration::from_secs(600));
    let resp = app
        .http
        .post(format!("{}/api/v1/admin/providers/groq/reset", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "z"}}),
    )
    .await;
    assert_eq!(task["result"]["provider"], "groq", "{task}");
    let resp = app
        .http
        .post(format!("{}/api/v1/admin/providers/nope/reset", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let (status, _) = app.get("ann", "/api/v1/admin/providers").await;
    assert_eq!(status, 403);
    app.cleanup().await;
}
both_modes!(
    an_open_breaker_skips_the_provider_until_reset,
    an_open_breaker_skips_the_provider_until_reset
);

/// An admin takes a provider out of every fallback chain and puts it back; both are audited.
async fn a_disabled_provider_is_skipped_until_enabled(mode: Mode) {
    let fake = FakeProviders::start().await;
    let vars = env(&fake, &["groq", "claude"], &[]);
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    let token = app.token_with("ops", Role::Admin, Duration::from_secs(600));
    let switch = |action: &'static str, name: &'static str| {
        app.http
            .post(format!(
                "{}/api/v1/admin/providers/{name}/{action}",
                app.base
            ))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(switch("disable", "groq").await.unwrap().status(), 200);
    assert_eq!(switch("disable", "nope").await.unwrap().status(), 404);
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "x", "cache": false}}),
    )
    .await;
    assert_eq!(task["result"]["provider"], "claude", "{task}");
    assert_eq!(
        fake.request_count("groq"),
        0,
        "a disabled provider is not called"
    );
    assert_eq!(
        attempts(&app, "ann", &task).await[0],
        ("groq".into(), "skipped_disabled".into())
    );
    let report = admin_get(&app, "/api/v1/admin/providers").await;
    let groq = report["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "groq")
        .unwrap()
        .clone();
    assert_eq!(groq["disabled"], true, "{report}");

    assert_eq!(switch("enable", "groq").await.unwrap().status(), 200);
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "y", "cache": false}}),
    )
    .await;
    assert_eq!(task["result"]["provider"], "groq", "{task}");
    let user = app.token("ann");
    let refused = app
        .http
        .post(format!("{}/api/v1/admin/providers/groq/disable", app.base))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let log = admin_get(&app, "/api/v1/admin/audit").await;
    let actions: Vec<(&str, &str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("enable_provider", "groq", "ok"),
            ("disable_provider", "nope", "error"),
            ("disable_provider", "groq", "ok"),
        ],
        "{log}"
    );
    app.cleanup().await;
}
both_modes!(
    a_disabled_provider_is_skipped_until_enabled,
    a_disabled_provider_is_skipped_until_enabled
);

async fn budget_is_checked_before_the_call(mode: Mode) {
    let fake = FakeProviders::start().await;
    // 1 µ$ budget; a call reserves at least its max tokens' price, far more.
    let vars = env(
        &fake,
        &["openai"],
        &[
            ("USER_MONTHLY_BUDGET", "0.000001"),
            ("OPENAI_PRICE", "input=1,output=1"),
        ],
    );
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    let task = run(
        &app,
        "ann",
        json!({"type": "validate_summary", "payload": {"original": "o", "summary": "s"}}),
    )
    .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["class"], "non_retryable");
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap()
            .contains("monthly budget exceeded"),
        "{task}"
    );
    assert_eq!(fake.request_count("openai"), 0, "no money spent");
    let scrape = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape.contains("ais_budget_rejections_total "),
        "the refusal is counted:\n{scrape}"
    );
    let (_, budget) = app.get("ann", "/api/v1/budget").await;
    assert_eq!(budget["spent_usd"], 0.0, "{budget}");
    assert_eq!(budget["reserved_usd"], 0.0, "{budget}");

    // An admin raises this user's budget; the next task runs and its cost is booked.
    let token = app.token_with("ops", Role::Admin, Duration::from_secs(600));
    let resp = app
        .http
        .put(format!("{}/api/v1/admin/budgets/ann", app.base))
        .bearer_auth(&token)
        .json(&json!({"monthly_usd": "5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    fake.set_reply("openai", r#"{"valid": true, "score": 0.9, "issues": []}"#);
    let task = run(
        &app,
        "ann",
        json!({"type": "validate_summary", "payload": {"original": "o", "summary": "s"}}),
    )
    .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"]["valid"], true);
    let (_, budget) = app.get("ann", "/api/v1/budget").await;
    assert_eq!(budget["budget_usd"], 5.0, "{budget}");
    assert!(budget["spent_usd"].as_f64().unwrap() > 0.0, "{budget}");
    assert_eq!(budget["reserved_usd"], 0.0, "settled: {budget}");
    app.cleanup().await;
}
both_modes!(
    budget_is_checked_before_the_call,
    budget_is_checked_before_the_call
);

/// A call dropped before it answers (here: the task's own timeout, shorter than the
/// provider's) is recorded as `abandoned` at its reserved cost, which the budget books as
/// spent: nothing stays reserved, and usage and budget agree.
async fn an_abandoned_call_is_recorded_and_booked(mode: Mode) {
    let fake = FakeProviders::start().await;
    let vars = env(
        &fake,
        &["openai"],
        &[
            ("USER_MONTHLY_BUDGET", "5"),
            ("OPENAI_PRICE", "input=1,output=1"),
            ("JOB_QUEUE_MAX_RETRIES", "0"),
        ],
    );
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    // Under AI_REQUEST_TIMEOUT (2 s), over the task's 1 s.
    fake.set_latency(Duration::from_millis(1500));
    let task = run(
        &app,
        "ann",
        json!({"type": "validate_summary", "timeout_seconds": 1,
               "payload": {"original": "o", "summary": "s"}}),
    )
    .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{task}"
    );
    let id = task["task_id"].as_str().unwrap();
    let mut tries = Value::Null;
    for _ in 0..50 {
        let (_, body) = app
            .get("ann", &format!("/api/v1/tasks/{id}/attempts"))
            .await;
        tries = body["attempts"].clone();
        if !tries.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let tries = tries.as_array().unwrap();
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert_eq!(tries[0]["provider"], "openai");
    assert_eq!(tries[0]["outcome"], "abandoned", "{tries:?}");
    let cost = tries[0]["cost_usd"].as_f64().unwrap();
    assert!(cost > 0.0, "at its reservation: {tries:?}");
    // The reservation is settled in the background as the call drops.
    let mut budget = Value::Null;
    for _ in 0..50 {
        budget = app.get("ann", "/api/v1/budget").await.1;
        if budget["reserved_usd"] == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(budget["reserved_usd"], 0.0, "nothing stays held: {budget}");
    assert_eq!(budget["spent_usd"], cost, "booked as spent: {budget}");
    // Our dropping the call says nothing of the provider's health.
    let report = admin_get(&app, "/api/v1/admin/providers").await;
    let openai = report["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "openai")
        .unwrap();
    assert_eq!(
        (&openai["calls"], &openai["skipped"]),
        (&json!(0), &json!(0)),
        "{report}"
    );
    app.cleanup().await;
}
both_modes!(
    an_abandoned_call_is_recorded_and_booked,
    an_abandoned_call_is_recorded_and_booked
);

async fn identical_requests_are_answered_from_the_cache(mode: Mode) {
    let fake = FakeProviders::start().await;
    fake.set_reply("gemini", r#"{"meaning": "a greeting", "examples": []}"#);
    let vars = env(&fake, &["gemini"], &[]);
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    let body =
        json!({"type": "item_info_generation", "payload": {"item": "hello", "language": "en"}});
    let first = run(&app, "ann", body.clone()).await;
    assert_eq!(first["result"]["meaning"], "a greeting", "{first}");
    assert_eq!(first["result"]["item"], "hello");
    let sent = fake.last_request("gemini").unwrap();
    assert_eq!(sent.header("x-goog-api-key"), Some(fake.key("gemini")));
    let second = run(&app, "bob", body).await;
    assert_eq!(second["result"]["cached"], true, "{second}");
    assert_eq!(fake.request_count("gemini"), 1);
    let third = run(&app, "ann", json!({"type": "item_info_generation", "payload": {"item": "hello", "language": "en", "cache": false}})).await;
    assert_eq!(third["status"], "completed");
    assert_eq!(fake.request_count("gemini"), 2, "cache: false opts out");
    let report = admin_get(&app, "/api/v1/admin/providers").await;
    assert_eq!(report["cache"]["hits"], 1, "{report}");
    app.cleanup().await;
}
both_modes!(
    identical_requests_are_answered_from_the_cache,
    identical_requests_are_answered_from_the_cache
);

async fn rate_limited_answers_retry_after_retry_after(mode: Mode) {
    let fake = FakeProviders::start().await;
    fake.set_reply("groq", r#"{"summary": "Later."}"#);
    let vars = env(&fake, &["groq"], &[("AI_FALLBACK_ENABLED", "false")]);
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    fake.push_fault("groq", Fault::rate_limited("groq", 1));
    let started = std::time::Instant::now();
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "t"}}),
    )
    .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["retry_count"], 1);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        attempts(&app, "ann", &task).await,
        [
            ("groq".into(), "rate_limited".into()),
            ("groq".into(), "ok".into())
        ]
    );
    app.cleanup().await;
}
both_modes!(
    rate_limited_answers_retry_after_retry_after,
    rate_limited_answers_retry_after_retry_after
);

async fn summarize_falls_back_to_extraction_when_every_provider_fails(mode: Mode) {
    let fake = FakeProviders::start().await;
    let vars = env(&fake, &["groq"], &[]);
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    fake.push_fault("groq", Fault::status("groq", 500));
    let text = "First sentence of the article. ".repeat(30);
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": text}}),
    )
    .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"]["method"], "extraction");
    assert!(task["result"]["summary"].as_str().unwrap().len() <= 300);
    app.cleanup().await;
}
both_modes!(
    summarize_falls_back_to_extraction_when_every_provider_fails,
    summarize_falls_back_to_extraction_when_every_provider_fails
);

async fn images_by_search_and_by_generation(mode: Mode) {
    let fake = FakeProviders::start().await;
    let vars = env(&fake, &["unsplash", "openai"], &[]);
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    let found = run(&app, "ann", json!({"type": "image_generation", "payload": {"prompt": "mountains", "source": "search", "count": 2}})).await;
    assert_eq!(found["status"], "completed", "{found}");
    assert_eq!(found["result"]["source"], "search");
    assert!(
        !found["result"]["images"].as_array().unwrap().is_empty(),
        "{found}"
    );
    let sent = fake.last_request("unsplash").unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Client-ID {}", fake.key("unsplash")))
    );
    let drawn = run(
        &app,
        "ann",
        json!({"type": "image_generation", "payload": {"prompt": "a cat"}}),
    )
    .await;
    assert_eq!(drawn["status"], "completed", "{drawn}");
    assert_eq!(drawn["result"]["source"], "generated");
    assert_eq!(drawn["result"]["provider"], "openai");
    app.cleanup().await;
}
both_modes!(
    images_by_search_and_by_generation,
    images_by_search_and_by_generation
);

async fn extract_content_reads_an_article(mode: Mode) {
    use axum::routing::get;
    let article = "<html><head><title>Big News</title></head><body><nav>menu</nav><article>\
        <h1>Big News</h1><p>The main body of the article has several sentences. It explains \
        what happened in detail, so that the readability algorithm can find it.</p><p>A second \
        paragraph adds more text about the event and its consequences for everyone.</p>\
        </article><footer>footer</footer></body></html>";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/post", listener.local_addr().unwrap());
    let server = axum::Router::new().route(
        "/post",
        get(move || async move { axum::response::Html(article) }),
    );
    tokio::spawn(async move { axum::serve(listener, server).await });

    let Some(app) = spawn_app(mode, &[("EXTRACT_ALLOW_PRIVATE", "true")]).await else {
        return;
    };
    let task = run(
        &app,
        "ann",
        json!({"type": "extract_content", "payload": {"url": url}}),
    )
    .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"]["title"], "Big News");
    assert!(
        task["result"]["text"]
            .as_str()
            .unwrap()
            .contains("main body of the article"),
        "{task}"
    );
    assert!(
        !task["result"]["text"].as_str().unwrap().contains("footer"),
        "{task}"
    );
    app.cleanup().await;

    // By default private addresses are refused (no SSRF into the cluster).
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let task = run(
        &app,
        "ann",
        json!({"type": "extract_content", "payload": {"url": url}}),
    )
    .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["class"], "non_retryable");
    app.cleanup().await;
}
both_modes!(
    extract_content_reads_an_article,
    extract_content_reads_an_article
);

/// Two instances share one Redis: a provider's rate limit holds across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_rate_limit_is_global_across_instances() {
    let fake = FakeProviders::start().await;
    fake.set_reply("groq", r#"{"summary": "g"}"#);
    fake.set_reply("claude", r#"{"summary": "c"}"#);
    let vars = env(
        &fake,
        &["groq", "claude"],
        &[
            ("GROQ_RATE_LIMIT", "3/hour"),
            ("PROVIDER_RATE_WAIT", "0s"),
            ("RESPONSE_CACHE_TTL", "0"),
        ],
    );
    let Some(a) = app(Mode::Clustered, &vars).await else {
        return;
    };
    // The second instance shares the first's database and Redis prefix.
    let b = crate::helpers::start(a.vars.clone()).await;
    let mut by = std::collections::HashMap::<String, usize>::new();
    for i in 0..8 {
        let node = if i % 2 == 0 { &a } else { &b };
        let task = run(
            node,
            "ann",
            json!({"type": "summarize", "payload": {"text": format!("t{i}")}}),
        )
        .await;
        *by.entry(task["result"]["provider"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(by.get("groq"), Some(&3), "{by:?}");
    assert_eq!(by.get("claude"), Some(&5), "{by:?}");
    assert_eq!(
        fake.request_count("groq"),
        3,
        "no avoidable 429s: never called beyond its limit"
    );
    drop(b);
    a.cleanup().await;
}

/// Streamed tokens reach watchers as TaskProgress events before TaskCompleted; a stream that
/// broke and fell back to another provider is announced with `restart`.
async fn streamed_tokens_arrive_as_progress_events(mode: Mode) {
    use crate::notify_support::{sse, types, until_terminal};
    let fake = FakeProviders::start().await;
    let words: Vec<String> = (0..30).map(|i| format!("w{i}")).collect();
    fake.set_reply(
        "claude",
        &format!(r#"{{"summary": "{}"}}"#, words.join(" ")),
    );
    fake.set_chunk_delay(Duration::from_millis(15));
    let vars = env(&fake, &["groq", "claude"], &[]);
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    let mut events = sse(&app, "ann", "", None).await;
    fake.push_fault("groq", Fault::CutStream { after_tokens: 3 });
    let (status, task) = app
        .submit(
            "ann",
            json!({"type": "summarize", "payload": {"text": "stream me"}}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let id = task["task_id"].as_str().unwrap();
    let seen = until_terminal(&mut events, id).await;
    let kinds = types(&seen);
    assert_eq!(kinds.last(), Some(&"TaskCompleted"), "{kinds:?}");
    let progress: Vec<&Value> = seen
        .iter()
        .filter(|e| e["type"] == "TaskProgress")
        .collect();
    assert!(
        progress.len() >= 2,
        "tokens stream in several events: {kinds:?}"
    );
    assert!(
        progress
            .iter()
            .any(|e| e["data"]["restart"] == true && e["data"]["abandoned"] == "groq"),
        "the broken groq stream is announced: {progress:?}"
    );
    // After the last restart, the pieces are Claude's answer so far, in order (the outcome
    // carries the whole of it; the tail after the last progress tick is not sent twice).
    let last_restart = progress
        .iter()
        .rposition(|e| e["data"]["restart"] == true)
        .unwrap();
    let text: String = progress[last_restart..]
        .iter()
        .map(|e| e["data"]["tokens"].as_str().unwrap_or(""))
        .collect();
    let whole = format!(r#"{{"summary": "{}"}}"#, words.join(" "));
    assert!(text.contains("w0") && whole.starts_with(&text), "{text}");
    let (_, done) = app.get("ann", &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(done["result"]["summary"], words.join(" "));
    app.cleanup().await;
}
both_modes!(
    streamed_tokens_arrive_as_progress_events,
    streamed_tokens_arrive_as_progress_events
);

/// A gRPC request with a bearer token.
fn with<T>(token: String, body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The gRPC ProviderService: health, reset, usage, budget, attempts; admin-only calls refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_provider_service() {
    use ai_integration_service::api::proto::provider_service_client::ProviderServiceClient;
    use ai_integration_service::api::proto::{
        GetBudgetRequest, GetProviderHealthRequest, GetUsageRequest, ListTaskAttemptsRequest,
        ResetCircuitBreakerRequest, SetBudgetRequest,
    };
    let fake = FakeProviders::start().await;
    fake.set_reply("groq", r#"{"summary": "ok"}"#);
    let vars = env(&fake, &["groq"], &[]);
    let Some(app) = app(Mode::Embedded, &vars).await else {
        return;
    };
    let task = run(
        &app,
        "ann",
        json!({"type": "summarize", "payload": {"text": "t"}}),
    )
    .await;
    let _ = attempts(&app, "ann", &task).await;

    let mut client = ProviderServiceClient::connect(app.base.clone())
        .await
        .unwrap();

    let admin = app.token_with("ops", Role::Admin, Duration::from_secs(600));
    let health = client
        .get_provider_health(with(
            admin.clone(),
            GetProviderHealthRequest { window_seconds: 0 },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.providers[0].name, "groq");
    assert_eq!(health.providers[0].breaker_state, "closed");
    assert_eq!(health.providers[0].calls, 1);
    let denied = client
        .get_provider_health(with(
            app.token("ann"),
            GetProviderHealthRequest { window_seconds: 0 },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    client
        .reset_circuit_breaker(with(
            admin.clone(),
            ResetCircuitBreakerRequest {
                provider: "groq".into(),
            },
        ))
        .await
        .unwrap();
    let missing = client
        .reset_circuit_breaker(with(
            admin.clone(),
            ResetCircuitBreakerRequest {
                provider: "x".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let usage = client
        .get_usage(with(app.token("ann"), GetUsageRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(usage.usage.len(), 1);
    assert_eq!(usage.usage[0].provider, "groq");
    let budget = client
        .set_budget(with(
            admin,
            SetBudgetRequest {
                user_id: "ann".into(),
                monthly_micros: Some(5_000_000),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(budget.budget_micros, Some(5_000_000));
    let mine = client
        .get_budget(with(app.token("ann"), GetBudgetRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.budget_micros, Some(5_000_000));
    let tries = client
        .list_task_attempts(with(
            app.token("ann"),
            ListTaskAttemptsRequest {
                task_id: task["task_id"].as_str().unwrap().into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tries.attempts.len(), 1);
    assert_eq!(tries.attempts[0].outcome, "ok");
    let hidden = client
        .list_task_attempts(with(
            app.token("bob"),
            ListTaskAttemptsRequest {
                task_id: task["task_id"].as_str().unwrap().into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    app.cleanup().await;
}
