//! What the task feed needs of finished tasks: type and attempts from `tasks`, tokens and cost
//! summed over the task's provider calls in `usage_stats`.

use sqlx::{ColumnIndex, Executor, Pool, QueryBuilder};
use uuid::Uuid;

use super::sql::{ProjectionDialect, unsigned};
use crate::domain::TaskId;
use crate::store::StoreError;
use crate::store::sql::{Bind, Column, push_ids};

/// One finished task's figures, as stored now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedTaskFacts {
    /// The task.
    pub task_id: TaskId,
    /// Its type.
    pub task_type: String,
    /// Attempts started, over its whole life.
    pub attempts: u32,
    /// Prompt tokens over every provider call.
    pub input_tokens: u64,
    /// Generated tokens over every call.
    pub output_tokens: u64,
    /// What every call cost, micro-dollars.
    pub cost_micros: u64,
}

/// Most ids in one statement (well under SQLite's bound-variable limit).
const CHUNK: usize = 1000;

/// The figures of those of `ids` that exist (a deleted task has none).
pub(super) async fn facts<DB>(
    reads: &Pool<DB>,
    ids: &[TaskId],
) -> Result<Vec<FinishedTaskFacts>, StoreError>
where
    DB: ProjectionDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i64: Column<DB> + Bind<DB>,
{
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        // PostgreSQL sums BIGINTs as NUMERIC and stores attempts as INTEGER: cast both.
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT t.id, t.task_type, CAST(t.attempts AS BIGINT), \
             CAST(COALESCE(u.input_tokens, 0) AS BIGINT), \
             CAST(COALESCE(u.output_tokens, 0) AS BIGINT), \
             CAST(COALESCE(u.cost_micros, 0) AS BIGINT) \
             FROM tasks t LEFT JOIN (SELECT task_id, SUM(input_tokens) AS input_tokens, \
             SUM(output_tokens) AS output_tokens, SUM(cost_micros) AS cost_micros \
             FROM usage_stats WHERE task_id IN (",
        );
        push_ids(&mut qb, chunk);
        qb.push(") GROUP BY task_id) u ON u.task_id = t.id WHERE t.id IN (");
        push_ids(&mut qb, chunk);
        qb.push(")");
        let rows: Vec<(Uuid, String, i64, i64, i64, i64)> =
            qb.build_query_as().fetch_all(reads).await?;
        for (id, task_type, attempts, input, output, cost) in rows {
            found.push(FinishedTaskFacts {
                task_id: TaskId::from_uuid(id),
                task_type,
                attempts: u32::try_from(unsigned(attempts, "attempts")?).unwrap_or(u32::MAX),
                input_tokens: unsigned(input, "input tokens")?,
                output_tokens: unsigned(output, "output tokens")?,
                cost_micros: unsigned(cost, "cost")?,
            });
        }
    }
    Ok(found)
}
