//! The service on port 0 in either mode, for the end-to-end test: the part of the service's
//! `tests/api/helpers.rs` (`spawn_app`) and `tests/support/mod.rs` that this test needs, copied
//! because one package's tests cannot reach another's.
//!
//! Embedded mode gets a fresh data directory; clustered mode a fresh PostgreSQL database
//! (`ais_test_<uuid>` on `TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and a fresh Redis key prefix (on `TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). When a
//! server is unreachable the test is skipped with a notice, unless `CI` is set, where it fails.

use std::collections::HashMap;
use std::time::Duration;

use ai_integration_service::app::Application;
use ai_integration_service::config::Config;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The secret the app signs tokens with; loadgen mints its own from it.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";
/// How long to wait for PostgreSQL or Redis before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which backends the app uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SQLite and the in-process queue.
    Embedded,
    /// PostgreSQL and Redis.
    Clustered,
}

/// A running app and what to remove when it stops.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`: HTTP and gRPC share it.
    pub base: String,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    /// Keeps the embedded data directory alive until cleanup.
    _dir: Option<tempfile::TempDir>,
    /// The clustered app's database, dropped at cleanup.
    pg: Option<String>,
    /// The clustered app's Redis URL and key prefix, emptied at cleanup.
    redis: Option<(String, String)>,
}

/// Starts the app in `mode`; `None` when the mode's servers are unreachable outside CI.
pub async fn spawn_app(mode: Mode) -> Option<TestApp> {
    // As the service's own suite configures it: echo tasks, many per user.
    let mut env: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("JWT_SECRET", JWT_SECRET),
        ("RETRY_BASE_DELAY", "20ms"),
        ("SHUTDOWN_GRACE_PERIOD", "2s"),
        ("ENABLE_ECHO", "true"),
        ("MAX_ACTIVE_TASKS_PER_USER", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (mut dir, mut pg, mut redis) = (None, None, None);
    match mode {
        Mode::Embedded => {
            let d = tempfile::tempdir().expect("tempdir");
            env.insert("DATA_DIR".into(), d.path().display().to_string());
            dir = Some(d);
        }
        Mode::Clustered => {
            let db = pg_url().await?;
            let url = redis_url().await?;
            let prefix = format!("ais_test_{}", Uuid::new_v4().simple());
            env.insert("DATABASE_URL".into(), db.clone());
            env.insert("REDIS_URL".into(), url.clone());
            env.insert("REDIS_KEY_PREFIX".into(), prefix.clone());
            env.insert("DATABASE_MAX_CONNECTIONS".into(), "8".into());
            pg = Some(db);
            redis = Some((url, prefix));
        }
    }
    let config = Config::from_vars(&env).expect("valid test config");
    let app = Application::build(config).await.expect("app builds");
    let port = app.port();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    Some(TestApp {
        base: format!("http://127.0.0.1:{port}"),
        shutdown,
        server,
        _dir: dir,
        pg,
        redis,
    })
}

impl TestApp {
    /// Stops the app gracefully and removes its database and keys.
    pub async fn cleanup(self) {
        self.shutdown.cancel();
        self.server
            .await
            .expect("server task")
            .expect("clean shutdown");
        if let Some(db) = &self.pg {
            drop_pg_database(db).await;
        }
        if let Some((url, prefix)) = &self.redis {
            cleanup_redis_prefix(url, prefix).await;
        }
    }
}

/// Whether we run in CI (`CI` set and non-empty), where a missing server is an error.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

/// Panics in CI; elsewhere prints a skip notice.
fn unreachable_server(what: &str, url: &str, err: &dyn std::fmt::Display) {
    if in_ci() {
        panic!("{what} unreachable at {url}: {err}; CI requires it");
    }
    eprintln!("SKIPPED: {what} unreachable at {url}: {err} (set CI=1 to make this an error)");
}

/// `TEST_<name>` if set and non-empty, else `default`.
fn server_url(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The admin URL of the test PostgreSQL server.
fn pg_admin_url() -> String {
    server_url(
        "TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

/// `url` with its database (the path) replaced by `db`, keeping any query string.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// Creates a fresh database `ais_test_<uuid>` and returns its URL.
async fn pg_url() -> Option<String> {
    let admin = pg_admin_url();
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&admin)).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            unreachable_server("PostgreSQL", &admin, &e);
            return None;
        }
        Err(_) => {
            unreachable_server("PostgreSQL", &admin, &"connect timed out");
            return None;
        }
    };
    let name = format!("ais_test_{}", Uuid::new_v4().simple());
    // `name` is `ais_test_` plus hex digits: nothing to escape.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin}: {e}"));
    let _ = conn.close().await;
    Some(with_database(&admin, &name))
}

/// Drops a database made by [`pg_url`] (and only such a one), closing its connections.
async fn drop_pg_database(url: &str) {
    let name = url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default();
    assert!(
        name.starts_with("ais_test_")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "refusing to drop database {name:?}: not created by pg_url"
    );
    let admin = pg_admin_url();
    let dropped = async {
        let mut conn = PgConnection::connect(&admin).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await
    };
    if let Err(e) = dropped.await {
        eprintln!("warning: could not drop test database {name}: {e}");
    }
}

/// The test Redis server's URL, once it answers `PING`.
async fn redis_url() -> Option<String> {
    let url = server_url("TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => {
            unreachable_server("Redis", &url, &e);
            None
        }
        Err(_) => {
            unreachable_server("Redis", &url, &"connect timed out");
            None
        }
    }
}

/// Deletes every key under `prefix` (only a test's own `ais_test_` prefix).
async fn cleanup_redis_prefix(url: &str, prefix: &str) {
    assert!(
        prefix.starts_with("ais_test_"),
        "refusing to delete keys under {prefix:?}"
    );
    let result: redis::RedisResult<()> = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let pattern = format!("{prefix}:*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<i64>(&mut conn)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
    .await;
    if let Err(e) = result {
        eprintln!("warning: could not clean Redis prefix {prefix}: {e}");
    }
}
