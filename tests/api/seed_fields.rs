//! Issue 18: the seeds' fields and surfaces. Test customisation's `instruction` and image
//! `style` reach the provider; a first run without keys summarizes by extraction; seed 003's
//! job API and its `AI_MAX_CONCURRENT_REQUESTS`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::ai::{app, attempts, env, run};
use crate::helpers::{Mode, both_modes, spawn_app};
use crate::support::fake_providers::FakeProviders;

async fn instruction_and_style_reach_the_provider(mode: Mode) {
    let fake = FakeProviders::start().await;
    let vars = env(
        &fake,
        &["groq", "openai"],
        &[
            ("RESPONSE_CACHE_TTL", "0"),
            ("PROVIDER_CHAIN_TEST_CUSTOMIZATION", "groq"),
        ],
    );
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    fake.set_reply(
        "groq",
        r#"{"questions": [{"item": "run", "question": "q"}]}"#,
    );
    let test = run(
        &app,
        "erin",
        json!({"type": "test_customization", "payload": {
            "items": ["run"], "instruction": "Only past tenses, please."}}),
    )
    .await;
    assert_eq!(test["status"], "completed", "{test}");
    assert_eq!(test["result"]["instruction"], "Only past tenses, please.");
    let sent = fake.last_request("groq").unwrap();
    let user_turn = sent.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        user_turn.contains("Instruction: Only past tenses, please."),
        "{user_turn}"
    );

    let image = run(
        &app,
        "erin",
        json!({"type": "image_generation", "payload": {
            "description": "a lighthouse", "style": "vivid", "model": "dall-e-3"}}),
    )
    .await;
    assert_eq!(image["status"], "completed", "{image}");
    assert_eq!(image["result"]["style"], "vivid");
    let sent = fake.last_request("openai").unwrap();
    assert_eq!(
        (sent.body["style"].as_str(), sent.body["prompt"].as_str()),
        (Some("vivid"), Some("a lighthouse"))
    );
    app.cleanup().await;
}
both_modes!(
    instruction_and_style_reach_the_provider,
    instruction_and_style_reach_the_provider
);

async fn without_keys_summarize_answers_by_extraction(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let text = "The first sentence says what the article is about. ".repeat(20);
    let task = run(
        &app,
        "finn",
        json!({"type": "summarize", "payload": {"text": text}}),
    )
    .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        (
            task["result"]["method"].as_str(),
            task["result"]["provider"].as_str()
        ),
        (Some("extraction"), Some("extraction"))
    );
    assert_eq!(
        attempts(&app, "finn", &task).await,
        vec![("extraction".to_owned(), "ok".to_owned())]
    );
    // A type with no keyless fallback names what would enable it.
    let task = run(
        &app,
        "finn",
        json!({"type": "item_info_generation", "payload": {"item": "w"}}),
    )
    .await;
    assert_eq!(task["status"], "failed", "{task}");
    let msg = task["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("GROQ_API_KEY") && msg.contains("OPENAI_COMPAT_BASE_URL"),
        "{msg}"
    );
    let task = run(
        &app,
        "finn",
        json!({"type": "image_generation", "payload": {"prompt": "p", "source": "search"}}),
    )
    .await;
    // Images answer with development tiles (so the `menu` pipeline fills in) that say which
    // key would give real ones.
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"]["provider"], "development", "{task}");
    let note = task["result"]["note"].as_str().unwrap();
    assert!(note.contains("UNSPLASH_API_KEY"), "{note}");
    app.cleanup().await;
}
both_modes!(
    without_keys_summarize_answers_by_extraction,
    without_keys_summarize_answers_by_extraction
);

async fn seed_003_job_api(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let token = app.token("gail");
    let post = |body: Value| {
        app.http
            .post(format!("{}/api/v1/jobs", app.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let resp = post(json!({"type": "summarize", "priority": 7, "payload": {
        "content": "An article. It has sentences.", "user_preferences": {"length": "short", "language": "ja"}}}))
    .await
    .unwrap();
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    let id = job["job_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (job["type"].as_str(), job["priority"].as_u64()),
        (Some("summarize"), Some(7))
    );
    let mut done = Value::Null;
    for _ in 0..200 {
        let (status, body) = app.get("gail", &format!("/api/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "completed" {
            done = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(done["progress"], 100, "{done}");
    assert_eq!(done["error"], Value::Null);
    assert_eq!(done["result"]["length"], "short");
    assert_eq!(done["result"]["language"], "ja");
    for key in ["job_id", "status", "progress", "result", "error"] {
        assert!(done.get(key).is_some(), "{key} missing: {done}");
    }
    // The same task through the task API, and nobody else's.
    let (status, _) = app.get("gail", &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 200);
    let (status, _) = app.get("mallory", &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, 404);
    // Bad input answers like the task API.
    let resp = post(json!({"type": "summarize", "payload": {"article_id": "x"}}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("payload.article_id"),
        "{err}"
    );
    app.cleanup().await;
}
both_modes!(seed_003_job_api, seed_003_job_api);

async fn provider_calls_are_capped_across_the_pool(mode: Mode) {
    let fake = FakeProviders::start().await;
    fake.set_latency(Duration::from_millis(300));
    let vars = env(
        &fake,
        &["groq"],
        &[
            ("AI_MAX_CONCURRENT_REQUESTS", "1"),
            ("RESPONSE_CACHE_TTL", "0"),
        ],
    );
    let Some(app) = app(mode, &vars).await else {
        return;
    };
    let token = app.token("hal");
    let tasks: Vec<Value> = (0..3)
        .map(|i| json!({"type": "summarize", "payload": {"text": format!("text {i}")}}))
        .collect();
    let resp = app
        .http
        .post(format!("{}/api/v1/tasks/batch", app.base))
        .bearer_auth(&token)
        .json(&json!({"tasks": tasks}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    let mut ends: Vec<DateTime<Utc>> = Vec::new();
    for t in body["tasks"].as_array().unwrap() {
        let id = t["task_id"].as_str().unwrap();
        let done = app.wait_terminal("hal", id, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "completed", "{done}");
        ends.push(done["completed_at"].as_str().unwrap().parse().unwrap());
    }
    ends.sort();
    // One call at a time: the three 300 ms calls end at least ~300 ms apart (10 workers
    // would have run them together).
    let spread = ends[2] - ends[0];
    assert!(
        spread >= chrono::Duration::milliseconds(550),
        "calls overlapped: {spread}"
    );
    app.cleanup().await;
}
both_modes!(
    provider_calls_are_capped_across_the_pool,
    provider_calls_are_capped_across_the_pool
);
