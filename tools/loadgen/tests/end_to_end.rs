//! The load generator against a real server (the service's own `Application` on port 0, in both
//! modes): it submits, waits, reads and reports, and with `--watch` times each task's terminal
//! event at the client.

mod support;

use serde_json::Value;

use support::{JWT_SECRET, Mode, spawn_app};

async fn reports_a_clean_run_with_notification_times(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &app.base, "--jwt-secret", JWT_SECRET])
        .args(["-n", "200", "--rate", "400", "--protocol", "grpc"])
        .args(["--watch", "--json", "--timeout", "30s"])
        .output()
        .await
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["completed"], 200, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let (complete, notified) = (
        &report["submit_to_complete_ms"],
        &report["submit_to_notified_ms"],
    );
    assert_eq!(
        notified["count"], 200,
        "every task's end was seen: {report}"
    );
    // A task's event leaves after its outcome is stored, which is after `completed_at`.
    for q in ["p50", "p99", "max"] {
        assert!(
            notified[q].as_f64().unwrap() >= complete[q].as_f64().unwrap(),
            "{q}: {report}"
        );
    }
    app.cleanup().await;
}

mod reports_a_clean_run_with_notification_times {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded() {
        reports_a_clean_run_with_notification_times(Mode::Embedded).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clustered() {
        reports_a_clean_run_with_notification_times(Mode::Clustered).await;
    }
}
