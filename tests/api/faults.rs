//! Fault tests with real server processes sharing one PostgreSQL and one Redis: an instance is
//! killed with SIGKILL or stopped with SIGTERM mid-run, and no accepted task is lost or
//! completed twice.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::JWT_SECRET;
use crate::support;

/// One server process; killed when dropped so a failing test leaves nothing running.
struct Instance {
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    db: String,
    redis: String,
    prefix: String,
    http: reqwest::Client,
    token: String,
}

impl Cluster {
    async fn new() -> Option<Self> {
        let db = support::pg_url().await?;
        let redis = support::redis_url().await?;
        let keys = ai_integration_service::auth::JwtKeys::new(
            &ai_integration_service::config::Secret::new(JWT_SECRET),
        );
        let user = ai_integration_service::domain::UserId::parse("fault").unwrap();
        let token = keys
            .issue(
                &user,
                ai_integration_service::auth::Role::User,
                Duration::from_secs(3600),
            )
            .unwrap();
        Some(Self {
            db,
            redis,
            prefix: support::redis_prefix(),
            http: reqwest::Client::new(),
            token,
        })
    }

    /// Starts an instance and waits until it is ready.
    async fn start(&self, extra: &[(&str, &str)]) -> Instance {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ai-integration-service"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &self.db)
            .env("REDIS_URL", &self.redis)
            .env("REDIS_KEY_PREFIX", &self.prefix)
            .env("JWT_SECRET", JWT_SECRET)
            .env("DATABASE_MAX_CONNECTIONS", "8")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let instance = Instance {
            child: cmd.spawn().expect("server starts"),
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self
                .http
                .get(format!("{}/readyz", instance.base))
                .send()
                .await
                && r.status() == 200
            {
                return instance;
            }
            assert!(
                Instant::now() < deadline,
                "instance on port {port} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn submit_batch(&self, on: &Instance, tasks: Vec<Value>) -> Vec<String> {
        let resp = self
            .http
            .post(format!("{}/api/v1/tasks/batch", on.base))
            .bearer_auth(&self.token)
            .json(&json!({ "tasks": tasks }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let body: Value = resp.json().await.unwrap();
        body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Counts rows straight from the database, the source of truth.
    async fn count(&self, sql: &'static str) -> i64 {
        let mut conn = sqlx::PgConnection::connect(&self.db).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    }

    /// Waits until exactly `n` tasks are processing.
    async fn wait_processing(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let running = self
                .count("SELECT COUNT(*) FROM tasks WHERE status = 'processing'")
                .await;
            if running == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{running} tasks processing, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_all_completed(&self, n: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let done = self
                .count("SELECT COUNT(*) FROM tasks WHERE status = 'completed'")
                .await;
            if done == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {done} of {n} tasks completed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn cleanup(self) {
        support::drop_pg_database(&self.db).await;
        support::cleanup_redis_prefix(&self.redis, &self.prefix).await;
    }
}

fn sigterm(instance: &Instance) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(instance.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGKILL an instance while it runs 200 slow tasks: another instance rescues them when their
/// leases expire and completes each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_loses_no_task_and_completes_each_once() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let settings = [("LEASE_DURATION", "2s"), ("WORKER_POOL_SIZE", "100")];
    let mut a = cluster.start(&settings).await;
    let tasks: Vec<Value> = (0..200)
        .map(|i| json!({"type": "echo", "payload": {"i": i, "delay_ms": 1500}}))
        .collect();
    let ids = cluster.submit_batch(&a, tasks).await;
    assert_eq!(ids.len(), 200);
    // Mid-run: the instance holds 100 tasks (its pool size) when it dies.
    cluster.wait_processing(100).await;
    a.child.kill().unwrap(); // SIGKILL: no shutdown code runs
    a.child.wait().unwrap();

    let b = cluster.start(&settings).await;
    cluster
        .wait_all_completed(200, Duration::from_secs(60))
        .await;
    let twice = cluster
        .count(
            "SELECT COUNT(*) FROM (SELECT task_id FROM task_events WHERE event_type = 'TaskCompleted' \
             GROUP BY task_id HAVING COUNT(*) > 1) d",
        )
        .await;
    assert_eq!(twice, 0, "a task was completed twice");
    let completions = cluster
        .count("SELECT COUNT(*) FROM task_events WHERE event_type = 'TaskCompleted'")
        .await;
    assert_eq!(completions, 200);
    let rescued = cluster
        .count("SELECT COUNT(*) FROM tasks WHERE retry_count = 1")
        .await;
    assert!(rescued > 0, "tasks the killed instance held were retried");
    drop(b);
    cluster.cleanup().await;
}

/// SIGTERM while tasks run: the instance exits 0 within its grace period, handing unfinished
/// tasks back at once (no lease wait, no attempt counted), and another instance completes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_unfinished_tasks_back() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let settings = [
        ("LEASE_DURATION", "60s"),
        ("WORKER_POOL_SIZE", "10"),
        ("SHUTDOWN_GRACE_PERIOD", "1s"),
    ];
    let mut a = cluster.start(&settings).await;
    let tasks: Vec<Value> = (0..20)
        .map(|i| json!({"type": "echo", "payload": {"i": i, "delay_ms": 4000}}))
        .collect();
    cluster.submit_batch(&a, tasks).await;
    cluster.wait_processing(10).await;

    let started = Instant::now();
    sigterm(&a);
    let status = a.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(
        cluster
            .count("SELECT COUNT(*) FROM tasks WHERE status = 'processing'")
            .await,
        0
    );
    assert_eq!(
        cluster
            .count("SELECT COUNT(*) FROM tasks WHERE status = 'pending' AND retry_count = 0")
            .await,
        20
    );

    // Leases were 60 s: completing now proves nothing waited for them.
    let b = cluster.start(&[("WORKER_POOL_SIZE", "20")]).await;
    cluster
        .wait_all_completed(20, Duration::from_secs(20))
        .await;
    drop(b);
    cluster.cleanup().await;
}
