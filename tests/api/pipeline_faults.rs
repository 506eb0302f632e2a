//! A pipeline session survives `kill -9` of its instance: every stored result stays as it
//! was, and a new instance on the same storage finishes the session.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ai_integration_service::auth::Role;
use serde_json::{Value, json};

use crate::faults::{Cluster, Instance, start_instance, token_for};
use crate::pipelines::{five_stage_file, items};

async fn get(base: &str, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{base}/api/v1/pipeline-sessions/{id}?page_size=1000"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Completed stages' results by (item, stage).
fn results(session: &Value) -> HashMap<(String, String), Value> {
    let mut out = HashMap::new();
    for item in session["items"].as_array().into_iter().flatten() {
        for (stage, s) in item["stages"].as_object().into_iter().flatten() {
            if s["status"] == "completed" {
                out.insert(
                    (item["id"].as_str().unwrap().to_owned(), stage.clone()),
                    s["result"].clone(),
                );
            }
        }
    }
    out
}

/// Creates a session on `start(..)`'s first instance, kills it mid-session, starts a second
/// and checks that the session completes with every earlier result intact.
async fn survives_kill(start: impl AsyncFn() -> Instance) {
    let token = token_for("alice", Role::User);
    let a = start().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/pipelines/five/sessions", a.base))
        .bearer_auth(&token)
        .json(&json!({"items": items(30, "k")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let stored = results(&get(&a.base, &token, &id).await);
        if stored.len() >= 20 {
            break stored;
        }
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut a = a;
    a.child.kill().unwrap(); // SIGKILL: no shutdown code runs
    a.child.wait().unwrap();

    let b = start().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let session = loop {
        let s = get(&b.base, &token, &id).await;
        if s["status"] != "processing" && s["status"] != "pending" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "session not finished after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(session["status"], "completed", "{session}");
    let after = results(&session);
    assert_eq!(after.len(), 150);
    for (key, result) in &before {
        assert_eq!(
            after.get(key),
            Some(result),
            "{key:?} changed after the restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_session_survives_kill_9() {
    let file = five_stage_file(150, None);
    let dir = tempfile::tempdir().unwrap();
    let (file, dir) = (
        file.path().display().to_string(),
        dir.path().display().to_string(),
    );
    let env = [
        ("PIPELINES_FILE", file.as_str()),
        ("DATA_DIR", dir.as_str()),
        ("LEASE_DURATION", "2s"),
    ];
    survives_kill(async || start_instance(&env).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clustered_session_survives_kill_9() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let file = five_stage_file(150, None);
    let file = file.path().display().to_string();
    let env = [("PIPELINES_FILE", file.as_str()), ("LEASE_DURATION", "2s")];
    survives_kill(async || cluster.start(&env).await).await;
    cluster.cleanup().await;
}
