//! PostgreSQL task store (clustered mode): shared by every instance.
//!
//! `one_trip.rs` is its hot path (submit, claim and completion as one prepared statement
//! each, on warm connections of their own; `prepared.rs` holds the statements, `wal_flush.rs`
//! the durability barrier its outcomes wait for); `dialect.rs` is what the shared SQL of
//! `store/sql/` does the PostgreSQL way; `numbering.rs` numbers each user's events in SQL;
//! `pools.rs` opens and checks connections.

mod dialect;
mod numbering;
mod one_trip;
mod pools;
mod prepared;
mod wal_flush;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use self::one_trip::OneTrip;
use self::pools::ping_if_idle;
use crate::domain::{Task, TaskId, WorkerId};
use crate::store::sql::{Sql, SqlStore};
use crate::store::{AfterCommit, EventPublisher, Finish, Inserted, StoreError};

/// Tasks in PostgreSQL.
#[derive(Clone)]
pub struct PgTaskStore {
    /// Shared connection pool; sized by `DATABASE_MAX_CONNECTIONS`.
    pool: PgPool,
    /// The same pool: PostgreSQL runs concurrent writers itself.
    writer: PgPool,
    /// Submit, claim and finish in one statement each, on warm connections of their own
    /// (see `one_trip.rs`).
    one_trip: OneTrip,
    /// Receives each transaction's events after it commits.
    publisher: AfterCommit,
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
            .test_before_acquire(false)
            .before_acquire(ping_if_idle)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let one_trip = OneTrip::connect(&options, max_connections, &pool).await?;
        Ok(Self {
            writer: pool.clone(),
            pool,
            one_trip,
            publisher: AfterCommit::default(),
        })
    }

    /// Hands every committed event to `publisher`.
    pub fn with_publisher(mut self, publisher: Arc<dyn EventPublisher>) -> Self {
        self.publisher = AfterCommit::from(publisher);
        self
    }

    /// The pool, for health checks and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl SqlStore for PgTaskStore {
    type Db = sqlx::Postgres;

    fn sql(&self) -> Sql<'_, sqlx::Postgres> {
        Sql {
            reads: &self.pool,
            writes: &self.writer,
            after_commit: &self.publisher,
        }
    }

    async fn hot_insert_tasks(&self, tasks: Vec<Task>) -> Result<Vec<Inserted>, StoreError> {
        let (reads, after_commit) = (&self.pool, &self.publisher);
        self.one_trip.insert_tasks(tasks, reads, after_commit).await
    }

    async fn hot_claim(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError> {
        let after_commit = &self.publisher;
        let claim = self
            .one_trip
            .claim(ids, worker, lease_until, now, after_commit);
        claim.await
    }

    async fn hot_finish(&self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
        self.one_trip.finish(finishes, &self.publisher).await
    }
}
