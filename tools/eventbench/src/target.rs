//! The store under test: on a fresh PostgreSQL database, or a SQLite file in a temporary
//! directory.

use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::domain::eventstore::SnapshotPolicy;
use ai_integration_service::store::eventstore::EventStore;
use ai_integration_service::store::progress::ProjectionStore;
use ai_integration_service::store::{PgTaskStore, SqliteTaskStore};
use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use tokio_util::sync::CancellationToken;

use crate::args::{Args, Store};

/// The service's checkpoint interval in embedded mode (`app.rs`).
const SQLITE_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// The store, and what to clean up after it.
pub struct Target {
    /// The event store.
    store: Arc<dyn EventStore>,
    /// Projection checkpoints, leases and read models, on the same database.
    projections: Arc<dyn ProjectionStore>,
    /// PostgreSQL: the admin options and the run's database, to drop.
    database: Option<(PgConnectOptions, String)>,
    /// SQLite: the directory of the file, removed when dropped.
    _dir: Option<tempfile::TempDir>,
    /// SQLite: stops the checkpointer.
    checkpoints: CancellationToken,
}

impl Target {
    /// Opens the store `args` asks for, on a database of its own.
    pub async fn open(args: &Args) -> anyhow::Result<Self> {
        match args.store {
            Store::Postgres => {
                let admin: PgConnectOptions =
                    args.database_url.parse().context("--database-url")?;
                let name = format!("eventbench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = admin.connect().await.context("connecting to PostgreSQL")?;
                // `name` is `eventbench_` plus hex digits: nothing to escape.
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                let url = run_url(&args.database_url, &name);
                // One connection per appender, the reader's, and the projections' and their watcher's.
                let connections =
                    u32::try_from(args.appenders.max(args.lag_appenders) + 6).unwrap_or(u32::MAX);
                let tasks = PgTaskStore::connect(&url, connections).await?;
                Ok(Self {
                    store: Arc::new(tasks.event_store(SnapshotPolicy::default())),
                    projections: Arc::new(tasks.projection_store()),
                    database: Some((admin, name)),
                    _dir: None,
                    checkpoints: CancellationToken::new(),
                })
            }
            Store::Sqlite => {
                let dir = tempfile::tempdir()?;
                let tasks = SqliteTaskStore::open(dir.path()).await?;
                // Checkpoints as the service runs them in embedded mode.
                let checkpoints = CancellationToken::new();
                tokio::spawn(
                    tasks
                        .checkpointer(SQLITE_CHECKPOINT_INTERVAL)
                        .run(checkpoints.clone()),
                );
                Ok(Self {
                    store: Arc::new(tasks.event_store(SnapshotPolicy::default())),
                    projections: Arc::new(tasks.projection_store()),
                    database: None,
                    _dir: Some(dir),
                    checkpoints,
                })
            }
        }
    }

    /// The event store.
    pub fn store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    /// The projection store.
    pub fn projections(&self) -> Arc<dyn ProjectionStore> {
        self.projections.clone()
    }

    /// Drops the run's PostgreSQL database, unless `keep`.
    pub async fn close(self, keep: bool) {
        self.checkpoints.cancel();
        let Some((admin, name)) = self.database else {
            return;
        };
        drop(self.store);
        drop(self.projections);
        if keep {
            println!("kept database {name}");
            return;
        }
        let dropped = async {
            let mut conn = admin.connect().await?;
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
        };
        match tokio::time::timeout(Duration::from_secs(30), dropped).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("eventbench: could not drop database {name}: {e}"),
            Err(_) => eprintln!("eventbench: dropping database {name} timed out"),
        }
    }
}

/// `url` with its database replaced by `db`, keeping any query string.
fn run_url(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let root = base[authority..]
        .find('/')
        .map_or(base, |i| &base[..authority + i]);
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}
