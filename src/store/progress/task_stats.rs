//! The task statistics' rows: increments added per user, day, type and outcome.

use chrono::NaiveDate;
use sqlx::{Executor, QueryBuilder, Transaction};

use super::sql::{ProjectionDialect, signed};
use crate::domain::progress::TaskStatsFold;
use crate::store::StoreError;
use crate::store::sql::{Bind, INSERT_CHUNK};

/// Adds the fold's increments to the generation's rows, in the open transaction.
pub(super) async fn write<DB>(
    tx: &mut Transaction<'_, DB>,
    generation: i64,
    fold: &TaskStatsFold,
) -> Result<(), StoreError>
where
    DB: ProjectionDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB>,
    i64: Bind<DB>,
    NaiveDate: Bind<DB>,
{
    let rows: Vec<_> = fold.rows().iter().collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO task_stats_daily (generation, user_id, day, task_type, outcome, tasks, \
             attempts, input_tokens, output_tokens, cost_micros) ",
        );
        qb.push_values(chunk, |mut b, (k, r)| {
            b.push_bind(generation)
                .push_bind(k.user_id.as_str())
                .push_bind(k.day)
                .push_bind(k.task_type.as_str())
                .push_bind(k.outcome.as_str())
                .push_bind(signed(r.tasks))
                .push_bind(signed(r.attempts))
                .push_bind(signed(r.input_tokens))
                .push_bind(signed(r.output_tokens))
                .push_bind(signed(r.cost_micros));
        });
        qb.push(
            " ON CONFLICT (generation, user_id, day, task_type, outcome) DO UPDATE SET \
             tasks = task_stats_daily.tasks + excluded.tasks, \
             attempts = task_stats_daily.attempts + excluded.attempts, \
             input_tokens = task_stats_daily.input_tokens + excluded.input_tokens, \
             output_tokens = task_stats_daily.output_tokens + excluded.output_tokens, \
             cost_micros = task_stats_daily.cost_micros + excluded.cost_micros",
        );
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}
