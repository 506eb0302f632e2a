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
mod servers;

pub use servers::*;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::queue::{MemoryQueue, RedisQueue, TaskQueue};
use ai_integration_service::store::{PgTaskStore, SqliteTaskStore, TaskStore};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

/// Pool size for per-test PostgreSQL stores: enough for the concurrency tests, small enough
/// that many tests in parallel stay under the server's `max_connections`.
pub const PG_TEST_POOL_SIZE: u32 = 4;

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
