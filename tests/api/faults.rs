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
pub(crate) struct Instance {
    pub(crate) child: Child,
    pub(crate) base: String,
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

pub(crate) struct Cluster {
    db: String,
    pub(crate) redis: String,
    pub(crate) prefix: String,
    http: reqwest::Client,
    token: String,
}

impl Cluster {
    pub(crate) async fn new() -> Option<Self> {
        let db = support::pg_url().await?;
        let redis = support::redis_url().await?;
        Some(Self {
            db,
            redis,
            prefix: support::redis_prefix(),
            http: reqwest::Client::new(),
            token: token_for("fault", ai_integration_service::auth::Role::User),
        })
    }

    /// A cluster whose database is a private PostgreSQL, which the test may stop, crash and
    /// start; `None` outside CI when PostgreSQL, Redis or the server binaries are missing.
    pub(crate) async fn on_private_postgres() -> Option<(Self, PrivatePostgres)> {
        let mut cluster = Self::new().await?;
        support::drop_pg_database(&cluster.db).await;
        let pg = PrivatePostgres::start()?;
        cluster.db = pg.url();
        Some((cluster, pg))
    }

    /// Starts an instance and waits until it is ready.
    pub(crate) async fn start(&self, extra: &[(&str, &str)]) -> Instance {
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
            .env("ENABLE_ECHO", "true")
            .env("MAX_ACTIVE_TASKS_PER_USER", "0")
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

    /// GETs `path` on `on` as the holder of `token`; the JSON answer.
    async fn get_json(&self, on: &Instance, path: &str, token: &str) -> Value {
        self.http
            .get(format!("{}{path}", on.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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

    pub(crate) async fn cleanup(self) {
        support::drop_pg_database(&self.db).await;
        support::cleanup_redis_prefix(&self.redis, &self.prefix).await;
    }
}

/// A token for `user` with `role`, signed with the instances' secret, valid for an hour.
fn token_for(user: &str, role: ai_integration_service::auth::Role) -> String {
    ai_integration_service::auth::JwtKeys::new(&ai_integration_service::config::Secret::new(
        JWT_SECRET,
    ))
    .issue(
        &ai_integration_service::domain::UserId::parse(user).unwrap(),
        role,
        Duration::from_secs(3600),
    )
    .unwrap()
}

/// An unlabelled counter of `instance`'s scrape.
async fn counter(instance: &Instance, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", instance.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

pub(crate) fn sigterm(instance: &Instance) {
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
    assert!(
        counter(&b, "ais_leases_reaped_total").await > 0.0,
        "the reaper's rescues are counted"
    );
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

/// A private redis-server on a free port, for tests that flush or restart it without touching
/// the shared one other tests use. Killed when dropped.
struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    /// Starts one; `None` when redis-server is not installed (outside CI).
    async fn start() -> Option<Self> {
        let mut redis = Self {
            child: None,
            port: free_port(),
        };
        if !redis.spawn() {
            assert!(!support::in_ci(), "redis-server must be installed under CI");
            return None;
        }
        Some(redis)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private redis never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn flushall(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Each task completed exactly once, every one of `n`.
async fn assert_each_completed_once(cluster: &Cluster, n: i64) {
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
    assert_eq!(completions, n);
}

/// FLUSHALL on Redis mid-run: the queue is an index of the database, so the reconciler puts
/// every pending task back and all complete, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushed_mid_run_loses_nothing() {
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let Some(redis) = PrivateRedis::start().await else {
        return;
    };
    cluster.redis = redis.url();
    let settings = [("WORKER_POOL_SIZE", "20"), ("RECONCILE_INTERVAL", "1s")];
    let a = cluster.start(&settings).await;
    let tasks: Vec<Value> = (0..300)
        .map(|i| json!({"type": "echo", "payload": {"i": i, "delay_ms": 100}}))
        .collect();
    cluster.submit_batch(&a, tasks).await;
    cluster.wait_processing(20).await;
    redis.flushall().await;
    cluster
        .wait_all_completed(300, Duration::from_secs(60))
        .await;
    assert_each_completed_once(&cluster, 300).await;
    assert!(
        counter(&a, "ais_reconciler_requeued_total").await > 0.0,
        "the reconciler's re-queues are counted"
    );
    drop(a);
    support::drop_pg_database(&cluster.db).await;
}

/// Redis restarted (empty, no persistence) mid-run: submits answer 503 while it is down, the
/// instance reconnects by itself, and every accepted task completes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_run_loses_nothing() {
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    cluster.redis = redis.url();
    let settings = [("WORKER_POOL_SIZE", "20"), ("RECONCILE_INTERVAL", "1s")];
    let a = cluster.start(&settings).await;
    let tasks: Vec<Value> = (0..200)
        .map(|i| json!({"type": "echo", "payload": {"i": i, "delay_ms": 100}}))
        .collect();
    cluster.submit_batch(&a, tasks).await;
    cluster.wait_processing(20).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = cluster
        .http
        .get(format!("{}/readyz", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while Redis is down");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(redis.spawn(), "redis restarts");
    cluster
        .wait_all_completed(200, Duration::from_secs(60))
        .await;
    assert_each_completed_once(&cluster, 200).await;
    drop(a);
    support::drop_pg_database(&cluster.db).await;
}

/// Three instances race on 5,000 tasks: every task is claimed once, completed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_race_on_5000_tasks() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let settings = [("WORKER_POOL_SIZE", "10")];
    let nodes = [
        cluster.start(&settings).await,
        cluster.start(&settings).await,
        cluster.start(&settings).await,
    ];
    for (i, chunk) in (0..5000).collect::<Vec<_>>().chunks(1000).enumerate() {
        let tasks: Vec<Value> = chunk
            .iter()
            .map(|k| json!({"type": "echo", "payload": {"i": k}}))
            .collect();
        cluster.submit_batch(&nodes[i % 3], tasks).await;
    }
    cluster
        .wait_all_completed(5000, Duration::from_secs(120))
        .await;
    assert_each_completed_once(&cluster, 5000).await;
    let started_twice = cluster
        .count(
            "SELECT COUNT(*) FROM (SELECT task_id FROM task_events WHERE event_type = 'TaskStarted' \
             GROUP BY task_id HAVING COUNT(*) > 1) d",
        )
        .await;
    assert_eq!(started_twice, 0, "a task was claimed twice");
    let workers = cluster
        .count("SELECT COUNT(DISTINCT data->>'worker_id') FROM task_events WHERE event_type = 'TaskStarted'")
        .await;
    assert!(
        workers >= 2,
        "the instances shared the work ({workers} workers)"
    );
    drop(nodes);
    cluster.cleanup().await;
}

/// A private PostgreSQL cluster (initdb into a temp dir, run as the `postgres` user), for the
/// test that stops and restarts it without touching the shared server. Stopped when dropped.
pub(crate) struct PrivatePostgres {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// Creates and starts one; `None` when PostgreSQL's server binaries are not installed
    /// (outside CI).
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path().join("bin")).max());
        let Some(bin) = bin.filter(|b| b.join("initdb").exists()) else {
            assert!(
                !support::in_ci(),
                "PostgreSQL server binaries must be installed under CI"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        Command::new("chown")
            .args(["postgres", &dir.path().display().to_string()])
            .status()
            .unwrap();
        let pg = Self {
            bin,
            dir,
            port: free_port(),
        };
        let ok = pg
            .as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(pg.data())
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "initdb");
        pg.ctl("start");
        Some(pg)
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, tool: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
        cmd
    }

    /// `pg_ctl start` (waits until it accepts connections), `stop` (`-m fast`) or `crash`
    /// (`stop -m immediate`: no shutdown checkpoint, and WAL not yet written is lost).
    pub(crate) fn ctl(&self, action: &str) {
        let mut cmd = self.as_postgres("pg_ctl");
        cmd.arg("-D").arg(self.data()).arg("-w");
        if action == "start" {
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.path().display()
            );
            cmd.args(["-o", &opts, "-l"])
                .arg(self.dir.path().join("log"));
            cmd.arg("start");
        } else if action == "crash" {
            cmd.args(["-m", "immediate", "stop"]);
        } else {
            cmd.args(["-m", "fast", "stop"]);
        }
        let ok = cmd.stdout(Stdio::null()).status().unwrap().success();
        assert!(ok, "pg_ctl {action}");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The durability promise: a task whose submit was answered is in PostgreSQL's WAL, so it
/// survives PostgreSQL crashing right after the answer. (A commit whose WAL flush was skipped
/// would be lost: the crash drops WAL still in PostgreSQL's buffers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_submit_survives_a_postgres_crash() {
    let Some((cluster, pg)) = Cluster::on_private_postgres().await else {
        return;
    };
    let a = cluster.start(&[("WORKER_POOL_SIZE", "2")]).await;
    for i in 0..5 {
        // Still running at the crash: only the submits' own writes are in question.
        let task = json!({"type": "echo", "payload": {"i": i, "delay_ms": 60_000}});
        cluster.submit_batch(&a, vec![task]).await;
    }
    pg.ctl("crash");
    pg.ctl("start");
    assert_eq!(
        cluster.count("SELECT COUNT(*) FROM tasks").await,
        5,
        "every answered submit survives the crash"
    );
    drop(a);
    support::cleanup_redis_prefix(&cluster.redis, &cluster.prefix).await;
}

/// A new task's provider call starts while its insert commits (direct dispatch). When the
/// commit fails, the submit is refused and the call already under way is dropped at once: no
/// slot stays taken and nothing is written for a task that was never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_drops_the_call_it_started() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let fake = support::fake_providers::FakeProviders::start().await;
    let (base, key) = (fake.base_url("compat"), fake.key("compat"));
    let a = cluster
        .start(&[
            ("WORKER_POOL_SIZE", "2"),
            ("OPENAI_COMPAT_BASE_URL", &base),
            ("OPENAI_COMPAT_API_KEY", &key),
            ("PROVIDER_CHAIN_SUMMARIZE", "compat"),
        ])
        .await;
    let summarize = |text: &str| json!({"type": "summarize", "payload": {"text": text}});
    // One task through, so the pool has found the queue empty and dispatches the next directly.
    cluster.submit_batch(&a, vec![summarize("first")]).await;
    cluster.wait_all_completed(1, Duration::from_secs(10)).await;

    // Inserts wait behind this lock (reads do not), so the next commit hangs until the test
    // ends it.
    let mut lock = sqlx::PgConnection::connect(&cluster.db).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE tasks IN SHARE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    fake.set_latency(Duration::from_secs(30));
    let submit = tokio::spawn(
        cluster
            .http
            .post(format!("{}/api/v1/tasks", a.base))
            .bearer_auth(&cluster.token)
            .json(&summarize("second"))
            .send(),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.request_count("compat") < 2 {
        assert!(
            Instant::now() < deadline,
            "the second call never started while its insert waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_all(&mut lock)
    .await
    .unwrap();
    assert_eq!(ended, [true], "one insert was waiting");
    let submit = submit.await.unwrap().unwrap();
    assert_eq!(
        submit.status(),
        503,
        "a submit whose commit failed is refused"
    );

    let admin = token_for("ops", ai_integration_service::auth::Role::Admin);
    // At once, not when the pool's watch (every 500 ms) would find the task missing.
    let deadline = Instant::now() + Duration::from_millis(100);
    loop {
        let queues = cluster.get_json(&a, "/api/v1/admin/queues", &admin).await;
        if queues["pool"]["running"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call of the task not stored still runs: {queues}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    assert_eq!(
        cluster.count("SELECT COUNT(*) FROM tasks").await,
        1,
        "only the first task was stored"
    );
    drop(a);
    cluster.cleanup().await;
}

/// PostgreSQL restarted mid-run: while it is down the service answers 503 (readiness and
/// submits), it recovers without a restart of its own, and every accepted task completes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_run_loses_nothing() {
    let Some((cluster, pg)) = Cluster::on_private_postgres().await else {
        return;
    };
    let settings = [
        ("WORKER_POOL_SIZE", "20"),
        ("RECONCILE_INTERVAL", "1s"),
        ("LEASE_DURATION", "3s"),
    ];
    let a = cluster.start(&settings).await;
    let tasks: Vec<Value> = (0..200)
        .map(|i| json!({"type": "echo", "payload": {"i": i, "delay_ms": 100}}))
        .collect();
    cluster.submit_batch(&a, tasks).await;
    cluster.wait_processing(20).await;
    pg.ctl("stop");
    let ready = cluster
        .http
        .get(format!("{}/readyz", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while PostgreSQL is down");
    let submit = cluster
        .http
        .post(format!("{}/api/v1/tasks", a.base))
        .bearer_auth(&cluster.token)
        .json(&json!({"type": "echo", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        submit.status(),
        503,
        "a submit is refused, not lost, while PostgreSQL is down"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.ctl("start");
    cluster
        .wait_all_completed(200, Duration::from_secs(90))
        .await;
    assert_each_completed_once(&cluster, 200).await;
    let ready = cluster
        .http
        .get(format!("{}/readyz", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "ready again without a restart");
    drop(a);
    support::cleanup_redis_prefix(&cluster.redis, &cluster.prefix).await;
}
