//! PostgreSQL task store (clustered mode): shared by every instance.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;
use super::sql::impl_task_store;

/// Tasks in PostgreSQL.
#[derive(Clone)]
pub struct PgTaskStore {
    /// Shared connection pool; sized by `DATABASE_MAX_CONNECTIONS`.
    pool: PgPool,
}

impl PgTaskStore {
    /// Connects and runs the PostgreSQL migrations (under sqlx's advisory lock, so instances
    /// starting together do not race).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for health checks and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_task_store!(PgTaskStore, sqlx::Postgres);
