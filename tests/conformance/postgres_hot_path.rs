//! PostgreSQL's hot path (store/postgres): outcomes wait for a WAL flush barrier, and the
//! one-trip pools are warm when the store connects.

use std::sync::Arc;

use ai_integration_service::domain::Task;
use ai_integration_service::store::{Outcome, TaskStoreTesting};
use chrono::TimeDelta;
use serde_json::json;

use crate::fixtures::*;

/// PostgreSQL's outcomes commit without waiting for the WAL flush and then wait for a flush
/// barrier that begins after their commit (store/wal_flush.rs): a synchronous commit of a
/// `wal_flush_marks` row. So outcomes one after another each wait for a barrier of their own.
/// (Submits commit synchronously; `faults::an_accepted_submit_survives_a_postgres_crash`
/// checks that they are durable.)
mod postgres_writes_wait_for_a_wal_flush {
    use super::*;
    use ai_integration_service::store::PgTaskStore;

    async fn flushes(pool: &sqlx::PgPool) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(SUM(flushes), 0)::bigint FROM wal_flush_marks")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    async fn body(store: PgTaskStore) {
        let pool = store.pool().clone();
        let store: Arc<dyn TaskStoreTesting> = Arc::new(store);
        let tasks: Vec<Task> = (0..4).map(|i| task("alice", base() + ms(i))).collect();
        insert(&store, tasks.clone()).await;
        let w = worker("w-1");
        let at = now();
        store
            .claim(&ids(&tasks), &w, at + TimeDelta::minutes(1), at)
            .await
            .unwrap();
        for (i, t) in tasks.iter().enumerate() {
            let before = flushes(&pool).await;
            let outcome = if i % 2 == 0 {
                completed(json!({"i": i}), "echo")
            } else {
                Outcome::Failed {
                    error: retryable("no", None),
                }
            };
            let applied = store
                .finish(&[finish(t.id, &w, outcome, at)])
                .await
                .unwrap();
            assert_eq!(applied, vec![true]);
            assert!(
                flushes(&pool).await > before,
                "outcome {i} returned without a flush"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        let Some((store, url)) = crate::support::pg_store().await else {
            return;
        };
        crate::support::run_then_cleanup(body(store), crate::support::drop_pg_database(&url)).await;
    }
}

/// The hot-path pools open all their connections when the store connects, each having
/// prepared its statements (the completion's is the last the claim and outcome pool prepares),
/// so a fresh server's first submits and outcomes do not wait for connections or statement
/// preparation.
mod postgres_hot_pool_is_warm_at_start {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some((store, url)) = crate::support::pg_store().await else {
            return;
        };
        let pool = store.pool().clone();
        crate::support::run_then_cleanup(
            async move {
                // Each connection's last statement is the last one it prepared.
                let warm = |last: &'static str| {
                    let pool = pool.clone();
                    async move {
                        sqlx::query_scalar::<_, i64>(
                            "SELECT count(*) FROM pg_stat_activity \
                             WHERE datname = current_database() AND pid <> pg_backend_pid() \
                               AND query LIKE $1",
                        )
                        .bind(last)
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                    }
                };
                // One each for the claim and outcome loops, plus one to spare.
                assert_eq!(
                    warm("WITH input AS (%UPDATE tasks t SET status = 'completed'%").await,
                    3,
                    "claim and outcome connections with their statements prepared"
                );
                // One for the submit loop, plus one to spare.
                assert_eq!(
                    warm("WITH input AS (%INSERT INTO tasks%").await,
                    2,
                    "submit connections with their statement prepared"
                );
                drop(store);
            },
            crate::support::drop_pg_database(&url),
        )
        .await;
    }
}
