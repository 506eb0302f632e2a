//! One batch, one transaction: the checkpoint's compare-and-set first, then the read model.
//!
//! The checkpoint is updated first so that its row lock orders the batches of one projection
//! generation: a second runner's batch from the same position waits for the first to commit,
//! then finds the checkpoint moved and writes nothing.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{ColumnIndex, Executor, Pool};

use super::sql::{ProjectionDialect, signed};
use super::{ApplyError, Batch, BatchWork};
use crate::store::sql::{Bind, Column, RowsAffected};

/// Applies `batch` on `writes`.
pub(super) async fn apply<DB>(writes: &Pool<DB>, batch: Batch) -> Result<(), ApplyError>
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
{
    let mut tx = writes.begin_with(DB::BEGIN_WRITE).await?;
    let moved = sqlx::query(
        "UPDATE projection_checkpoints SET position = $1, updated_at = $2 \
         WHERE name = $3 AND generation = $4 AND position = $5",
    )
    .bind(signed(batch.to))
    .bind(crate::clock::now())
    .bind(batch.name.as_str())
    .bind(signed(batch.generation))
    .bind(signed(batch.from))
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() != 1 {
        tx.rollback().await?;
        return Err(ApplyError::Moved(batch.name));
    }
    let generation = signed(batch.generation);
    match batch.work {
        BatchWork::Progress(events) => super::learning::write(&mut tx, generation, &events).await?,
        BatchWork::TaskStats(fold) => super::task_stats::write(&mut tx, generation, &fold).await?,
    }
    tx.commit().await?;
    Ok(())
}
