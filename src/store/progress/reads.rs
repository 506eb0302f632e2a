//! What readers ask: always the active generation, so a rebuild in progress stays unseen
//! until it is swapped in.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{ColumnIndex, Executor};

use super::ProgressReads;
use super::learning::{DailyRow, USER_COLUMNS, UserRow, into_daily, into_user};
use super::sql::{ProjectionDialect, SqlProjectionStore, unsigned};
use crate::domain::UserId;
use crate::domain::progress::{DailyCounts, TaskOutcome, TaskStatsKey, TaskStatsRow, UserState};
use crate::store::StoreError;
use crate::store::sql::{Bind, Column};

/// `generation = (the active one of the projection named by $1)`, for a `WHERE`.
const ACTIVE: &str = "generation = (SELECT active_generation FROM projections WHERE name = $1)";

/// A `task_stats_daily` row without its generation.
type TaskRow = (NaiveDate, String, String, i64, i64, i64, i64, i64);

#[async_trait]
impl<DB> ProgressReads for SqlProjectionStore<DB>
where
    DB: ProjectionDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    i64: Column<DB>,
    NaiveDate: Column<DB>,
    Option<NaiveDate>: Column<DB>,
    Option<DateTime<Utc>>: Column<DB>,
{
    async fn user_progress(&self, user: &UserId) -> Result<Option<UserState>, StoreError> {
        // Column lists and conditions are this crate's constants; values are bound.
        let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM progress_users WHERE {ACTIVE} AND user_id = $2"
        )))
        .bind("progress")
        .bind(user.as_str())
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.map(into_user).transpose()?.map(|(_, s)| s))
    }

    async fn daily_stats(
        &self,
        user: &UserId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, DailyCounts)>, StoreError> {
        let rows: Vec<DailyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT day, sessions_completed, items_learned, items_reviewed, study_seconds, \
             correct_answers, wrong_answers, new_mastery_count FROM progress_daily \
             WHERE {ACTIVE} AND user_id = $2 AND day >= $3 AND day <= $4 ORDER BY day"
        )))
        .bind("progress")
        .bind(user.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter().map(into_daily).collect()
    }

    async fn task_stats(
        &self,
        user: &UserId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(TaskStatsKey, TaskStatsRow)>, StoreError> {
        let rows: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT day, task_type, outcome, tasks, attempts, input_tokens, output_tokens, \
             cost_micros FROM task_stats_daily \
             WHERE {ACTIVE} AND user_id = $2 AND day >= $3 AND day <= $4 \
             ORDER BY day, task_type, outcome"
        )))
        .bind("task_stats")
        .bind(user.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter()
            .map(
                |(day, task_type, outcome, tasks, attempts, input, output, cost)| {
                    let outcome = TaskOutcome::parse(&outcome)
                        .ok_or_else(|| StoreError::Corrupt(format!("task outcome {outcome:?}")))?;
                    Ok((
                        TaskStatsKey {
                            user_id: user.clone(),
                            day,
                            task_type,
                            outcome,
                        },
                        TaskStatsRow {
                            tasks: unsigned(tasks, "count")?,
                            attempts: unsigned(attempts, "count")?,
                            input_tokens: unsigned(input, "count")?,
                            output_tokens: unsigned(output, "count")?,
                            cost_micros: unsigned(cost, "count")?,
                        },
                    ))
                },
            )
            .collect()
    }
}
