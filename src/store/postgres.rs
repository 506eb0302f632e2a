//! PostgreSQL task store (clustered mode): shared by every instance.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;
use super::sql::impl_task_store;

/// Tasks in PostgreSQL.
#[derive(Clone)]
pub struct PgTaskStore {
    /// Shared connection pool; sized by `DATABASE_MAX_CONNECTIONS`.
    pub(super) pool: PgPool,
    /// The same pool: PostgreSQL runs concurrent writers itself.
    pub(super) writer: PgPool,
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
        Ok(Self {
            writer: pool.clone(),
            pool,
        })
    }

    /// The pool, for health checks and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

// The class of a task's last error, from its JSON `error` column.
impl_task_store!(PgTaskStore, sqlx::Postgres, "error->>'class'");

impl PgTaskStore {
    /// Completes many tasks in one statement (arrays through `UNNEST`); returns the
    /// (id, user) of each row that applied.
    async fn complete_rows(
        conn: &mut sqlx::PgConnection,
        rows: Vec<super::sql::CompleteRow>,
    ) -> Result<Vec<(uuid::Uuid, String)>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut workers = Vec::with_capacity(rows.len());
        let mut results = Vec::with_capacity(rows.len());
        let mut providers = Vec::with_capacity(rows.len());
        let mut ats = Vec::with_capacity(rows.len());
        for r in rows {
            ids.push(r.id);
            workers.push(r.worker_id);
            results.push(sqlx::types::Json(r.result));
            providers.push(r.provider);
            ats.push(r.at);
        }
        let applied = sqlx::query_as(
            "UPDATE tasks t SET status = 'completed', progress = 100, result = u.result, \
             provider = u.provider, completed_at = u.at, updated_at = u.at, worker_id = NULL, \
             lease_expires_at = NULL \
             FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::timestamptz[]) \
               AS u(id, worker_id, result, provider, at) \
             WHERE t.id = u.id AND t.status = 'processing' AND t.worker_id = u.worker_id \
             RETURNING t.id, t.user_id",
        )
        .bind(ids)
        .bind(workers)
        .bind(results)
        .bind(providers)
        .bind(ats)
        .fetch_all(&mut *conn)
        .await?;
        Ok(applied)
    }
}
