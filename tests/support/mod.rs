//! Shared helpers for integration tests that need real backing services.
//!
//! Every test binary that talks to PostgreSQL, Redis or SQLite declares `mod support;` and uses
//! what it needs from here. Each test gets its own isolated backend instance (a fresh database,
//! a fresh Redis key prefix, a fresh temporary directory), so tests can run in parallel and
//! only ever clean up what they created themselves.
//!
//! Servers:
//! - PostgreSQL: `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//!   used as the admin connection to create and drop per-test databases.
//! - Redis: `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
//!
//! When a server is unreachable the test is skipped with a notice on stderr, unless `CI` is set
//! to a non-empty value, in which case it panics: CI must never silently skip.

// Each test binary uses only a subset of these helpers.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod fake_providers;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::queue::{MemoryQueue, RedisQueue, TaskQueue};
use ai_integration_service::store::{PgTaskStore, SqliteTaskStore, TaskStore};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

/// Default admin URL of the test PostgreSQL server.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Default URL of the test Redis server.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Pool size for per-test PostgreSQL stores: enough for the concurrency tests, small enough
/// that many tests in parallel stay under the server's `max_connections`.
pub const PG_TEST_POOL_SIZE: u32 = 4;
/// How long to wait for a server before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether we run in CI (env `CI` set and non-empty), where missing servers are an error.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

/// Reports an unreachable server: panics in CI, otherwise prints a skip notice to stderr.
fn unreachable_server(what: &str, url: &str, err: &dyn std::fmt::Display) {
    if in_ci() {
        panic!("{what} unreachable at {url}: {err}; CI requires it");
    }
    eprintln!("SKIPPED: {what} unreachable at {url}: {err} (set CI=1 to make this an error)");
}

/// The admin URL of the test PostgreSQL server (`TEST_DATABASE_URL` or the default).
pub fn pg_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// The URL of the test Redis server (`TEST_REDIS_URL` or the default).
pub fn redis_server_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// `url` with its database (the path component) replaced by `db`, keeping any query string.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
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

/// The database name in a PostgreSQL URL (the path component, without the query string).
fn database_of(url: &str) -> Option<&str> {
    let base = url.split('?').next()?;
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let slash = base[authority_start..].find('/')?;
    Some(&base[authority_start + slash + 1..]).filter(|s| !s.is_empty())
}

/// Creates a fresh, empty database `ais_test_<uuid>` on the test PostgreSQL server and returns
/// its URL. Returns `None` (after a notice on stderr) when the server is unreachable outside CI;
/// panics when it is unreachable in CI. Drop it with [`drop_pg_database`] when done.
pub async fn pg_url() -> Option<String> {
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

/// Drops a database made by [`pg_url`], terminating any connections still open to it.
/// Refuses (panics) for any database whose name does not start with `ais_test_`, so it can
/// never drop something a test did not create.
pub async fn drop_pg_database(url: &str) {
    let name = database_of(url).unwrap_or_default().to_owned();
    assert!(
        name.starts_with("ais_test_")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "refusing to drop database {name:?}: not created by support::pg_url"
    );
    let admin = pg_admin_url();
    match PgConnection::connect(&admin).await {
        Ok(mut conn) => {
            if let Err(e) = sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            {
                eprintln!("warning: could not drop test database {name}: {e}");
            }
            let _ = conn.close().await;
        }
        Err(e) => eprintln!("warning: could not drop test database {name}: {e}"),
    }
}

/// Checks that the test Redis server answers `PING` and returns its URL. Returns `None` (after
/// a notice on stderr) when it is unreachable outside CI; panics when it is unreachable in CI.
pub async fn redis_url() -> Option<String> {
    let url = redis_server_url();
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

/// A unique Redis key prefix for one test: `ais_test_<uuid>`.
pub fn redis_prefix() -> String {
    format!("ais_test_{}", Uuid::new_v4().simple())
}

/// Deletes every Redis key under `prefix` (`{prefix}:*`). Refuses (panics) for a prefix not
/// made by [`redis_prefix`], so it can never delete keys a test did not create.
pub async fn cleanup_redis_prefix(url: &str, prefix: &str) {
    assert!(
        prefix.starts_with("ais_test_"),
        "refusing to delete keys under {prefix:?}: not made by support::redis_prefix"
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
        eprintln!("warning: could not clean up Redis keys under {prefix}: {e}");
    }
}

/// A fresh temporary directory, removed when the returned value is dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ais_test_")
        .tempdir()
        .expect("create temporary directory")
}

/// The URL of a `tasks.db` SQLite file inside `dir`: `sqlite://<dir>/tasks.db`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("tasks.db").display())
}

/// Runs `fut` in its own task so a panic in it can be caught, lets `cleanup` run either way, and
/// then re-raises the panic (so the test still fails with the original message).
pub async fn run_then_cleanup<Fut, C>(fut: Fut, cleanup: C)
where
    Fut: Future<Output = ()> + Send + 'static,
    C: Future<Output = ()>,
{
    let outcome = tokio::spawn(fut).await;
    cleanup.await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task did not finish: {e}"),
        }
    }
}

/// A PostgreSQL store on a fresh database, and that database's URL (drop it with
/// [`drop_pg_database`]); `None` when the server is unreachable outside CI.
pub async fn pg_store() -> Option<(PgTaskStore, String)> {
    let url = pg_url().await?;
    match PgTaskStore::connect(&url, PG_TEST_POOL_SIZE).await {
        Ok(store) => Some((store, url)),
        Err(e) => {
            drop_pg_database(&url).await;
            panic!("PgTaskStore::connect({url}): {e}");
        }
    }
}

/// Runs a queue test body against Redis under a fresh key prefix (skipped when the server is
/// unreachable outside CI). The prefix's keys are deleted afterwards, pass or fail.
pub async fn run_with_redis_queue<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn TaskQueue>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = redis_url().await else { return };
    let prefix = redis_prefix();
    let queue = RedisQueue::connect(&url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("RedisQueue::connect({url}): {e}"));
    run_then_cleanup(body(Arc::new(queue)), cleanup_redis_prefix(&url, &prefix)).await;
}

/// Runs a queue test body against a fresh in-process [`MemoryQueue`].
pub async fn run_with_memory_queue<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn TaskQueue>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_then_cleanup(body(Arc::new(MemoryQueue::new())), async {}).await;
}

/// Declares queue conformance tests: for each
/// `async fn name(queue: Arc<dyn TaskQueue>)`, tests `name::redis` and `name::memory`.
macro_rules! queue_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                $crate::support::run_with_redis_queue(super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                $crate::support::run_with_memory_queue(super::$name).await;
            }
        }
    )+};
}

pub(crate) use queue_tests;
