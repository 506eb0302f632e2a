//! Conformance suite: the same tests run against every implementation of each port, on real
//! servers (never mocks).
//!
//! - [`TaskStore`](ai_integration_service::store::TaskStore) and the other store ports:
//!   PostgreSQL (`…::postgres`) and SQLite (`…::sqlite`).
//! - [`EventStore`](ai_integration_service::store::eventstore::EventStore): the same two,
//!   with its own harness in `event_store.rs`.
//! - [`TaskQueue`](ai_integration_service::queue::TaskQueue), the rate limiter and the
//!   breakers: Redis (`…::redis`) and in-process (`…::memory`).
//!
//! The harness is here: [`store_tests!`] runs each store case against every database, on a
//! store seen as [`TaskStoreTesting`] (the port plus what only tests call); `queue_tests!`
//! (from `tests/support`) does the same for the queue. One file per port or concern holds
//! the cases.
//! Each test gets a fresh database / key prefix / temp dir (see `tests/support`), so tests run
//! in parallel. Timestamps are truncated to microseconds, which is what PostgreSQL keeps, so a
//! stored task compares equal to the one written.

#[path = "../support/mod.rs"]
mod support;

mod fixtures;

mod audit;
mod breakers;
mod chat;
mod claims;
mod dead_letters;
mod event_store;
mod event_store_order;
mod events;
mod notifications;
mod outcomes;
mod pipelines;
mod postgres_hot_path;
mod projections;
mod queries;
mod queues;
mod rate_limiter;
mod stream_tickets;
mod task_queue;
mod tasks;
mod usage_store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::store::{PgTaskStore, SqliteTaskStore, TaskStoreTesting};

/// Runs a store case against a fresh PostgreSQL database, dropped afterwards, pass or fail
/// (skipped when the server is unreachable outside CI).
pub(crate) async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn TaskStoreTesting>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_postgres_as(|s| s as Arc<dyn TaskStoreTesting>, case).await;
}

/// Runs a store case against a fresh SQLite file in a temporary directory, removed afterwards.
pub(crate) async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn TaskStoreTesting>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_sqlite_as(|s| s as Arc<dyn TaskStoreTesting>, case).await;
}

/// [`on_postgres`] for a case that takes another face of the store (its chat, projection or
/// pipeline storage), made from the store by `face`.
pub(crate) async fn on_postgres_as<S, F, Fut>(face: impl FnOnce(Arc<PgTaskStore>) -> S, case: F)
where
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((store, url)) = support::pg_store().await else {
        return;
    };
    let pool = store.pool().clone();
    support::run_then_cleanup(case(face(Arc::new(store))), async {
        // Give the case's connections back politely; the FORCE drop handles any stragglers.
        let _ = tokio::time::timeout(Duration::from_secs(5), pool.close()).await;
        support::drop_pg_database(&url).await;
    })
    .await;
}

/// [`on_sqlite`] for a case that takes another face of the store, made by `face`.
pub(crate) async fn on_sqlite_as<S, F, Fut>(face: impl FnOnce(Arc<SqliteTaskStore>) -> S, case: F)
where
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = support::temp_dir();
    let url = support::sqlite_url(dir.path());
    let store = SqliteTaskStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("SqliteTaskStore::connect({url}): {e}"));
    support::run_then_cleanup(case(face(Arc::new(store))), async {}).await;
    drop(dir);
}

/// Declares store cases. For each `name`, an `async fn name(store: Arc<dyn TaskStoreTesting>)`
/// must be in scope; the macro makes a module `name` with the tests `postgres` and `sqlite`,
/// so each case runs against every database (filter with `cargo test postgres`, `cargo test
/// name`).
///
/// (`macro_rules!` cannot build identifiers such as `name_postgres` without an extra crate,
/// hence the module; a module and a function may share a name.)
macro_rules! store_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::on_postgres(super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::on_sqlite(super::$name).await;
            }
        }
    )+};
}
pub(crate) use store_tests;
