//! What a running task reports: its outcome (the general path: SQLite's write loop runs it,
//! and PostgreSQL for batches that are not all completions) and its progress.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::{Bind, Column, CompleteRow, Dialect, Lead, NewEvent, Sql, stored_user};
use crate::domain::TaskId;
use crate::store::{Finish, Outcome, StoreError};

/// Applies the outcomes whose worker still holds the task; returns which applied, plus the
/// events to write.
pub(crate) async fn finish_in_tx<DB>(
    tx: &mut DB::Connection,
    finishes: &[Finish],
    lead: &mut Lead,
) -> Result<(Vec<bool>, Vec<NewEvent>), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
    Option<String>: Bind<DB>,
    Option<i32>: Bind<DB>,
    Option<DateTime<Utc>>: Bind<DB>,
    Option<Json<serde_json::Value>>: Bind<DB>,
{
    // Completions, the common case, go in one statement.
    let completions: Vec<CompleteRow> = finishes
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Completed { result, provider } => Some(CompleteRow {
                id: f.task_id.as_uuid(),
                worker_id: f.worker_id.as_str().to_owned(),
                result: result.clone(),
                provider: provider.clone(),
                at: f.at,
            }),
            _ => None,
        })
        .collect();
    let completed: HashMap<Uuid, String> = DB::complete_rows(&mut *tx, completions, lead)
        .await?
        .into_iter()
        .collect();
    let mut applied = Vec::with_capacity(finishes.len());
    let mut events = Vec::with_capacity(finishes.len());
    for f in finishes {
        if let Outcome::Completed { provider, .. } = &f.outcome {
            let user = completed.get(&f.task_id.as_uuid());
            applied.push(user.is_some());
            if let Some(user) = user {
                let user = stored_user(user, || format!("user_id {user:?}"))?;
                events.push(NewEvent::completed(
                    f.task_id,
                    user,
                    provider.as_deref(),
                    f.at,
                ));
            }
            continue;
        }
        let (mut qb, error) = match &f.outcome {
            Outcome::Completed { .. } => continue,
            Outcome::Retry { error, run_after } => {
                let mut qb = QueryBuilder::<DB>::new(lead.take());
                qb.push(
                    "UPDATE tasks SET status = 'pending', \
                     retry_count = retry_count + 1, error = ",
                );
                qb.push_bind(Json(serde_json::json!(error)))
                    .push(", provider = ")
                    .push_bind(error.provider.clone())
                    .push(", run_after = ")
                    .push_bind(*run_after);
                (qb, error)
            }
            Outcome::Failed { error } => {
                let mut qb = QueryBuilder::<DB>::new(lead.take());
                qb.push("UPDATE tasks SET status = 'failed', error = ");
                qb.push_bind(Json(serde_json::json!(error)))
                    .push(", provider = ")
                    .push_bind(error.provider.clone())
                    .push(", completed_at = ")
                    .push_bind(f.at);
                (qb, error)
            }
        };
        qb.push(", worker_id = NULL, lease_expires_at = NULL, updated_at = ")
            .push_bind(f.at)
            .push(" WHERE id = ")
            .push_bind(f.task_id.as_uuid())
            .push(" AND status = 'processing' AND worker_id = ")
            .push_bind(f.worker_id.as_str().to_owned())
            .push(" RETURNING user_id, retry_count");
        let row: Option<(String, i32)> = qb.build_query_as().fetch_optional(&mut *tx).await?;
        applied.push(row.is_some());
        if let Some((user, retry_count)) = row {
            let user = stored_user(&user, || "user_id".into())?;
            events.push(match &f.outcome {
                Outcome::Retry { run_after, .. } => {
                    let attempt = u32::try_from(retry_count)
                        .map_err(|_| StoreError::Corrupt("retry_count".into()))?;
                    NewEvent::retrying(f.task_id, user, error, *run_after, attempt, f.at)
                }
                _ => NewEvent::failed(f.task_id, user, error, f.at),
            });
        }
    }
    Ok((applied, events))
}

impl<DB> Sql<'_, DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
    Option<String>: Bind<DB>,
    Option<i32>: Bind<DB>,
    Option<DateTime<Utc>>: Bind<DB>,
    Option<Json<serde_json::Value>>: Bind<DB>,
{
    /// [`TaskStore::record_progress_many`](crate::store::TaskStore::record_progress_many).
    pub(crate) async fn record_progress_many(
        &self,
        updates: Vec<(TaskId, Option<u8>, serde_json::Value)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.writes.begin().await?;
        // Progress is frequent and informational: where the database can, it commits without
        // waiting for its WAL flush (a database crash can lose the last progress events, ids
        // included, never a task's state).
        if let Some(relaxed) = DB::RELAXED_COMMIT {
            sqlx::query(relaxed).execute(&mut *tx).await?;
        }
        let mut applied = Vec::with_capacity(updates.len());
        let mut events = Vec::with_capacity(updates.len());
        for (task_id, progress, data) in updates {
            let mut qb = QueryBuilder::<DB>::new("UPDATE tasks SET progress = COALESCE(");
            qb.push_bind(progress.map(i32::from))
                .push(", progress), updated_at = ")
                .push_bind(now);
            if DB::SKIP_LOCKED {
                // Never wait for a task another transaction holds (it is finishing, and its
                // outcome carries the whole answer): with several tasks per transaction,
                // waiting could deadlock with a batch of completions that locks the same
                // tasks in another order. (SQLite's one writer never waits for a lock.)
                qb.push(
                    " WHERE id = (SELECT id FROM tasks WHERE status = 'processing' \
                     AND id = ",
                )
                .push_bind(task_id.as_uuid())
                .push(" FOR UPDATE SKIP LOCKED) RETURNING user_id");
            } else {
                qb.push(" WHERE id = ")
                    .push_bind(task_id.as_uuid())
                    .push(" AND status = 'processing' RETURNING user_id");
            }
            let user: Option<String> = qb.build_query_scalar().fetch_optional(&mut *tx).await?;
            applied.push(user.is_some());
            let Some(user) = user else { continue };
            let user = stored_user(&user, || "user_id".into())?;
            events.push(NewEvent::progress(task_id, user, progress, data, now));
        }
        if events.is_empty() {
            tx.rollback().await?;
            return Ok(applied);
        }
        let stored = DB::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        self.after_commit.publish(stored);
        Ok(applied)
    }
}
