//! The service on port 0 in either mode, for the end-to-end test: the part of the service's
//! `tests/api/helpers.rs` (`spawn_app`) this test needs; the test servers' helpers are the
//! service's own `tests/support/servers.rs`, included by path.
//!
//! Embedded mode gets a fresh data directory; clustered mode a fresh PostgreSQL database
//! (`ais_test_<uuid>` on `TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and a fresh Redis key prefix (on `TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). When a
//! server is unreachable the test is skipped with a notice, unless `CI` is set, where it fails.

use std::collections::HashMap;

#[path = "../../../../tests/support/servers.rs"]
mod servers;

use ai_integration_service::app::Application;
use ai_integration_service::config::Config;
use servers::{cleanup_redis_prefix, drop_pg_database, pg_url, redis_prefix, redis_url};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The secret the app signs tokens with; loadgen mints its own from it.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

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
            let prefix = redis_prefix();
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
