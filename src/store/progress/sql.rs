//! [`ProjectionStore`] and [`ProgressReads`](super::ProgressReads) for every database the
//! shared SQL serves: checkpoints, leases, parks and rebuilds here; batches in `apply.rs`.
//!
//! Statements use `$1`-style parameters, which both drivers bind by number.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{ColumnIndex, Executor, Pool, Postgres, Sqlite};

use super::{ApplyError, Batch, FinishedTaskFacts, ProjectionStore};
use crate::domain::TaskId;
use crate::domain::projection::{Parked, ProjectionName, ProjectionStatus};
use crate::store::sql::{Bind, Column, Dialect, SqlStore};
use crate::store::{PgTaskStore, SqliteTaskStore, StoreError};

/// Projections in PostgreSQL (clustered mode).
pub type PgProjectionStore = SqlProjectionStore<Postgres>;
/// Projections in SQLite (embedded mode).
pub type SqliteProjectionStore = SqlProjectionStore<Sqlite>;

/// The projections' storage on a task store's connections (make one with
/// [`PgTaskStore::projection_store`] or [`SqliteTaskStore::projection_store`]).
#[derive(Clone)]
pub struct SqlProjectionStore<DB: sqlx::Database> {
    /// For reads.
    pub(super) reads: Pool<DB>,
    /// For writes: in SQLite the one writer connection, shared with the task store and the
    /// event store, so a batch waits its turn instead of meeting `SQLITE_BUSY`.
    pub(super) writes: Pool<DB>,
}

/// How a database opens a write transaction.
pub(super) trait ProjectionDialect: Dialect {
    /// The statement that opens one (SQLite: take the write lock at once).
    const BEGIN_WRITE: &'static str;
    /// Locks the `projections` row a generation change reads, so a rebuild started while
    /// another is swapped in waits and sees the new active generation (PostgreSQL; SQLite's
    /// `BEGIN IMMEDIATE` already serialises the writers). Without it a rebuild could delete
    /// the generation just made active.
    const LOCK_ROW: &'static str;
}

impl ProjectionDialect for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_ROW: &'static str = " FOR UPDATE";
}

impl ProjectionDialect for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_ROW: &'static str = "";
}

/// A count as stored (`BIGINT`): past `i64::MAX` is unreachable in practice.
pub(super) fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count read back; a negative one is corrupt.
pub(super) fn unsigned(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {what}: {n}")))
}

/// A `projections` row joined with its active checkpoint.
type StatusRow = (
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<i64>,
    Option<String>,
    Option<DateTime<Utc>>,
);

const SELECT_STATUS: &str = "SELECT p.name, p.active_generation, c.position, \
     p.rebuild_generation, r.position, p.owner, p.lease_until, p.heartbeat_at, \
     p.parked_position, p.parked_error, p.parked_at \
     FROM projections p \
     JOIN projection_checkpoints c ON c.name = p.name AND c.generation = p.active_generation \
     LEFT JOIN projection_checkpoints r ON r.name = p.name AND r.generation = p.rebuild_generation";

fn into_status(r: StatusRow) -> Result<ProjectionStatus, StoreError> {
    let (name, active, position, rebuild, rebuild_at, owner, lease_until, heartbeat_at, pp, pe, pa) =
        r;
    let name = ProjectionName::parse(&name)
        .map_err(|_| StoreError::Corrupt(format!("unknown projection {name:?}")))?;
    let parked = match (pp, pe, pa) {
        (Some(position), Some(error), Some(at)) => Some(Parked {
            position: unsigned(position, "parked position")?,
            error,
            at,
        }),
        _ => None,
    };
    Ok(ProjectionStatus {
        name,
        active_generation: unsigned(active, "generation")?,
        position: unsigned(position, "position")?,
        rebuild: match rebuild {
            Some(g) => Some((
                unsigned(g, "generation")?,
                unsigned(rebuild_at.unwrap_or(0), "position")?,
            )),
            None => None,
        },
        parked,
        owner,
        lease_until,
        heartbeat_at,
    })
}

/// The read-model tables, each with a `name`'s rows: deleted by generation.
fn tables(name: ProjectionName) -> &'static [&'static str] {
    match name {
        ProjectionName::Progress => &["progress_users", "progress_items", "progress_daily"],
        ProjectionName::TaskStats => &["task_stats_daily"],
    }
}

#[async_trait]
impl<DB> ProjectionStore for SqlProjectionStore<DB>
where
    DB: ProjectionDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    i64: Column<DB>,
    bool: Column<DB>,
    Option<String>: Column<DB>,
    Option<i64>: Column<DB>,
    NaiveDate: Column<DB>,
    Option<NaiveDate>: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Option<DateTime<Utc>>: Column<DB>,
    uuid::Uuid: Column<DB>,
{
    async fn statuses(&self) -> Result<Vec<ProjectionStatus>, StoreError> {
        let rows: Vec<StatusRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_STATUS} ORDER BY p.name"
        )))
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter().map(into_status).collect()
    }

    async fn status(&self, name: ProjectionName) -> Result<ProjectionStatus, StoreError> {
        let row: StatusRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_STATUS} WHERE p.name = $1"
        )))
        .bind(name.as_str())
        .fetch_one(&self.reads)
        .await?;
        into_status(row)
    }

    async fn checkpoint(
        &self,
        name: ProjectionName,
        generation: u64,
    ) -> Result<Option<u64>, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT position FROM projection_checkpoints WHERE name = $1 AND generation = $2",
        )
        .bind(name.as_str())
        .bind(signed(generation))
        .fetch_optional(&self.reads)
        .await?;
        row.map(|(p,)| unsigned(p, "position")).transpose()
    }

    async fn acquire_lease(
        &self,
        name: ProjectionName,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE projections SET owner = $1, lease_until = $2, heartbeat_at = $3 \
             WHERE name = $4 AND (owner IS NULL OR owner = $1 OR lease_until IS NULL \
             OR lease_until < $3)",
        )
        .bind(owner)
        .bind(until)
        .bind(now)
        .bind(name.as_str())
        .execute(&self.writes)
        .await?;
        Ok(crate::store::sql::RowsAffected::rows_affected(&done) == 1)
    }

    async fn release_lease(&self, name: ProjectionName, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE projections SET owner = NULL, lease_until = NULL \
             WHERE name = $1 AND owner = $2",
        )
        .bind(name.as_str())
        .bind(owner)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn apply(&self, batch: Batch) -> Result<(), ApplyError> {
        super::apply::apply(&self.writes, batch).await
    }

    async fn park(&self, name: ProjectionName, parked: Parked) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE projections SET parked_position = $1, parked_error = $2, parked_at = $3 \
             WHERE name = $4",
        )
        .bind(signed(parked.position))
        .bind(parked.error)
        .bind(parked.at)
        .bind(name.as_str())
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn unpark(&self, name: ProjectionName) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE projections SET parked_position = NULL, parked_error = NULL, \
             parked_at = NULL WHERE name = $1",
        )
        .bind(name.as_str())
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn start_rebuild(
        &self,
        name: ProjectionName,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.writes.begin_with(DB::BEGIN_WRITE).await?;
        let (active, rebuild): (i64, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT active_generation, rebuild_generation FROM projections WHERE name = $1{}",
            DB::LOCK_ROW
        )))
        .bind(name.as_str())
        .fetch_one(&mut *tx)
        .await?;
        // Past every generation still stored, so no row of an older one is reused.
        let next = active.max(rebuild.unwrap_or(0)) + 1;
        if let Some(old) = rebuild {
            delete_generation::<DB>(&mut tx, name, old).await?;
        }
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, generation, position, updated_at) \
             VALUES ($1, $2, 0, $3)",
        )
        .bind(name.as_str())
        .bind(next)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE projections SET rebuild_generation = $1, parked_position = NULL, \
             parked_error = NULL, parked_at = NULL WHERE name = $2",
        )
        .bind(next)
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        unsigned(next, "generation")
    }

    async fn swap(&self, name: ProjectionName, generation: u64) -> Result<Option<u64>, StoreError> {
        let mut tx = self.writes.begin_with(DB::BEGIN_WRITE).await?;
        let old: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT active_generation FROM projections WHERE name = $1 AND rebuild_generation = $2{}",
            DB::LOCK_ROW
        )))
        .bind(name.as_str())
        .bind(signed(generation))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((old,)) = old else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query(
            "UPDATE projections SET active_generation = rebuild_generation, \
             rebuild_generation = NULL WHERE name = $1",
        )
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(unsigned(old, "generation")?))
    }

    async fn drop_generation(
        &self,
        name: ProjectionName,
        generation: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writes.begin_with(DB::BEGIN_WRITE).await?;
        delete_generation::<DB>(&mut tx, name, signed(generation)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finished_tasks(&self, ids: &[TaskId]) -> Result<Vec<FinishedTaskFacts>, StoreError> {
        super::finished::facts(&self.reads, ids).await
    }
}

/// Deletes a generation's rows and checkpoint, unless it is the active one.
async fn delete_generation<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    name: ProjectionName,
    generation: i64,
) -> Result<(), StoreError>
where
    DB: ProjectionDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
{
    let (active,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT active_generation FROM projections WHERE name = $1{}",
        DB::LOCK_ROW
    )))
    .bind(name.as_str())
    .fetch_one(&mut **tx)
    .await?;
    if active == generation {
        return Ok(());
    }
    for table in tables(name) {
        // The table names are constants of this file, not input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE generation = $1"
        )))
        .bind(generation)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1 AND generation = $2")
        .bind(name.as_str())
        .bind(generation)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl<DB: sqlx::Database> SqlProjectionStore<DB> {
    /// The store on `reads` and `writes`.
    fn on(reads: &Pool<DB>, writes: &Pool<DB>) -> Self {
        Self {
            reads: reads.clone(),
            writes: writes.clone(),
        }
    }
}

impl PgTaskStore {
    /// The projections' storage on this store's connections.
    pub fn projection_store(&self) -> PgProjectionStore {
        let sql = self.sql();
        SqlProjectionStore::on(sql.reads, sql.writes)
    }
}

impl SqliteTaskStore {
    /// The projections' storage on this store's connections (its readers, and its one
    /// writer).
    pub fn projection_store(&self) -> SqliteProjectionStore {
        let sql = self.sql();
        SqlProjectionStore::on(sql.reads, sql.writes)
    }
}
