//! The SQL of [`TaskStore`](super::TaskStore), written once for both databases.
//!
//! PostgreSQL and SQLite (3.35+) share every statement used here: `RETURNING`, `ON CONFLICT`,
//! multi-row `VALUES` and `IN (...)` lists. Placeholders differ (`$1` / `?`), and
//! [`sqlx::QueryBuilder`] writes the right one, so one macro body serves both stores.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::{Task, UserId};

pub use crate::domain::NewEvent;

/// A user id read back from the database.
pub fn stored_user(user: &str, what: impl FnOnce() -> String) -> Result<UserId, super::StoreError> {
    UserId::parse(user).map_err(|_| super::StoreError::Corrupt(what()))
}

/// Rows per multi-row INSERT: 25 binds a row stays under SQLite's 32,766-variable limit.
pub const INSERT_CHUNK: usize = 500;
/// Ids per `IN (...)` list.
pub const IN_CHUNK: usize = 1000;

/// `t` with every timestamp cut to microseconds, PostgreSQL's precision, so both databases
/// store the same instant and page tokens (microseconds) match stored values exactly.
pub fn at_micros(mut t: Task) -> Task {
    cut_to_micros(&mut t);
    t
}

/// [`at_micros`] in place.
pub fn cut_to_micros(t: &mut Task) {
    use chrono::SubsecRound;
    let cut = |d: DateTime<Utc>| d.trunc_subsecs(6);
    t.created_at = cut(t.created_at);
    t.updated_at = cut(t.updated_at);
    t.run_after = cut(t.run_after);
    t.started_at = t.started_at.map(cut);
    t.completed_at = t.completed_at.map(cut);
    t.lease_expires_at = t.lease_expires_at.map(cut);
}

/// The statement that opens a write transaction, sent with the transaction's first statement:
/// one trip to SQLite's connection thread instead of two. Empty once taken, and for
/// transactions that sqlx opened itself.
pub struct Lead(&'static str);

impl Lead {
    /// Nothing to open: the transaction is already open.
    pub fn none() -> Self {
        Self("")
    }

    /// Opens a SQLite write transaction (taking the write lock at once).
    pub fn begin_immediate() -> Self {
        Self("BEGIN IMMEDIATE; ")
    }

    /// The SQL to put before the next statement: the opening statement the first time, then
    /// nothing.
    pub fn take(&mut self) -> &'static str {
        std::mem::take(&mut self.0)
    }
}

/// A completion to write: `processing -> completed` if `worker_id` still holds the task.
pub struct CompleteRow {
    pub id: uuid::Uuid,
    pub worker_id: String,
    pub result: Value,
    pub provider: Option<String>,
    pub at: DateTime<Utc>,
}

/// Implements [`TaskStore`](super::TaskStore) for `$store` (which has a `pool` field for reads
/// and a `writer` field for transactions that write) on database `$db`.
///
/// The hot paths (`insert_tasks`, `claim`, `finish`) call `insert_tasks_impl`, `claim_impl` and
/// `finish_impl`, which each store defines from the portable parts here (`*_in_tx`: the
/// statements of one write inside a transaction, returning the events it owes): SQLite runs
/// many of them in one transaction; PostgreSQL replaces insert and claim with single
/// statements (one round trip each).
macro_rules! impl_task_store {
    ($store:ty, $db:ty, $error_class:literal) => {
        impl $store {
            // PostgreSQL replaces this with a single statement; SQLite uses it.
            /// Inserts `tasks` (skipping any whose id or idempotency key is already stored) and
            /// returns each task as stored, plus the events to write: `TaskCreated`, and
            /// `TaskStarted` for a task inserted already `processing`.
            #[allow(dead_code)]
            pub(crate) async fn insert_tasks_in_tx(
                tx: &mut <$db as sqlx::Database>::Connection,
                tasks: Vec<$crate::domain::Task>,
                lead: &mut $crate::store::sql::Lead,
            ) -> Result<
                (Vec<$crate::store::Inserted>, Vec<$crate::store::sql::NewEvent>),
                $crate::store::StoreError,
            > {
                use std::collections::HashSet;
                if tasks.is_empty() {
                    return Ok((Vec::new(), Vec::new()));
                }
                let tasks: Vec<$crate::domain::Task> =
                    tasks.into_iter().map($crate::store::sql::at_micros).collect();
                let mut inserted: HashSet<uuid::Uuid> = HashSet::with_capacity(tasks.len());
                for chunk in tasks.chunks($crate::store::sql::INSERT_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(lead.take());
                    Self::push_tasks_insert(&mut qb, chunk);
                    // Any conflict skips the row: an idempotency key seen before, or this very
                    // id when a commit whose answer was lost is retried.
                    qb.push(" ON CONFLICT DO NOTHING RETURNING id");
                    let ids: Vec<uuid::Uuid> =
                        qb.build_query_scalar().fetch_all(&mut *tx).await?;
                    inserted.extend(ids);
                }
                let events = $crate::store::sql::NewEvent::for_new_tasks(
                    tasks.iter().filter(|t| inserted.contains(&t.id.as_uuid())),
                );

                let mut out = Vec::with_capacity(tasks.len());
                for task in tasks {
                    if inserted.contains(&task.id.as_uuid()) {
                        out.push($crate::store::Inserted { task, created: true });
                        continue;
                    }
                    // The same id already stored (an earlier commit of this very task) is the
                    // task; otherwise the earlier task with the same idempotency key is.
                    let mut qb = Self::select();
                    qb.push(" AND ((id = ")
                        .push_bind(task.id.as_uuid())
                        .push(" AND user_id = ")
                        .push_bind(task.user_id.as_str().to_owned())
                        .push(") OR (user_id = ")
                        .push_bind(task.user_id.as_str().to_owned())
                        .push(" AND idempotency_key = ")
                        .push_bind(task.idempotency_key.clone())
                        .push(")) ORDER BY created_at LIMIT 1");
                    let row: Option<$crate::store::row::TaskRow> =
                        qb.build_query_as().fetch_optional(&mut *tx).await?;
                    let row = row.ok_or_else(|| {
                        $crate::store::StoreError::Corrupt(format!(
                            "task {} was neither inserted nor found by id or idempotency key",
                            task.id
                        ))
                    })?;
                    out.push($crate::store::Inserted { task: row.try_into()?, created: false });
                }
                Ok((out, events))
            }

            /// Appends `INSERT INTO tasks (...) VALUES ...` of `chunk` (at most
            /// [`INSERT_CHUNK`]($crate::store::sql::INSERT_CHUNK) rows), every column, with no
            /// conflict clause.
            pub(crate) fn push_tasks_insert(
                qb: &mut sqlx::QueryBuilder<$db>,
                chunk: &[$crate::domain::Task],
            ) {
                qb.push(format_args!(
                    "INSERT INTO tasks ({}) ",
                    $crate::store::row::TASK_COLUMNS
                ));
                qb.push_values(chunk, |mut b, t| {
                    let rel = t.related_entity.as_ref();
                    b.push_bind(t.id.as_uuid())
                        .push_bind(t.user_id.as_str().to_owned())
                        .push_bind(t.task_type.as_str())
                        .push_bind(t.status.as_str())
                        .push_bind(i32::from(t.priority.value()))
                        .push_bind(sqlx::types::Json(t.payload.clone()))
                        .push_bind(t.result.clone().map(sqlx::types::Json))
                        .push_bind(t.error.as_ref().map(|e| sqlx::types::Json(serde_json::json!(e))))
                        .push_bind(i32::from(t.progress))
                        .push_bind(t.retry_count as i32)
                        .push_bind(t.attempts as i32)
                        .push_bind(t.max_retries as i32)
                        .push_bind(t.idempotency_key.clone())
                        .push_bind(rel.map(|r| r.entity_type.clone()))
                        .push_bind(rel.map(|r| r.entity_id.clone()))
                        .push_bind(t.provider.clone())
                        .push_bind(t.worker_id.as_ref().map(|w| w.as_str().to_owned()))
                        .push_bind(t.lease_expires_at)
                        .push_bind($crate::store::row::timeout_ms(t))
                        .push_bind(t.run_after)
                        .push_bind(t.created_at)
                        .push_bind(t.updated_at)
                        .push_bind(t.started_at)
                        .push_bind(t.completed_at)
                        .push_bind(t.queue.as_str());
                });
            }

            // PostgreSQL replaces this with a single statement; SQLite uses it.
            /// Claims those of `ids` still pending for `worker` and returns them, plus the
            /// `TaskStarted` events to write.
            #[allow(dead_code)]
            pub(crate) async fn claim_in_tx(
                tx: &mut <$db as sqlx::Database>::Connection,
                ids: &[$crate::domain::TaskId],
                worker: &$crate::domain::WorkerId,
                lease_until: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
                lead: &mut $crate::store::sql::Lead,
            ) -> Result<
                (Vec<$crate::domain::Task>, Vec<$crate::store::sql::NewEvent>),
                $crate::store::StoreError,
            > {
                let mut claimed = Vec::with_capacity(ids.len());
                for chunk in ids.chunks($crate::store::sql::IN_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(lead.take());
                    qb.push(
                        "UPDATE tasks SET status = 'processing', attempts = attempts + 1, worker_id = ",
                    );
                    qb.push_bind(worker.as_str().to_owned())
                        .push(", lease_expires_at = ")
                        .push_bind(lease_until)
                        .push(", started_at = ")
                        .push_bind(now)
                        .push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE status = 'pending' AND id IN (");
                    Self::push_ids(&mut qb, chunk);
                    qb.push(format!(") RETURNING {}", $crate::store::row::TASK_COLUMNS));
                    let rows: Vec<$crate::store::row::TaskRow> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    claimed.extend($crate::store::row::into_tasks(rows)?);
                }
                let events = claimed
                    .iter()
                    .filter_map($crate::store::sql::NewEvent::started)
                    .collect();
                Ok((claimed, events))
            }

            /// Applies the outcomes whose worker still holds the task; returns which applied,
            /// plus the events to write.
            pub(crate) async fn finish_in_tx(
                tx: &mut <$db as sqlx::Database>::Connection,
                finishes: &[$crate::store::Finish],
                lead: &mut $crate::store::sql::Lead,
            ) -> Result<(Vec<bool>, Vec<$crate::store::sql::NewEvent>), $crate::store::StoreError>
            {
                use $crate::store::Outcome;
                // Completions, the common case, go in one statement.
                let completions: Vec<$crate::store::sql::CompleteRow> = finishes
                    .iter()
                    .filter_map(|f| match &f.outcome {
                        Outcome::Completed { result, provider } => {
                            Some($crate::store::sql::CompleteRow {
                                id: f.task_id.as_uuid(),
                                worker_id: f.worker_id.as_str().to_owned(),
                                result: result.clone(),
                                provider: provider.clone(),
                                at: f.at,
                            })
                        }
                        _ => None,
                    })
                    .collect();
                let completed: std::collections::HashMap<uuid::Uuid, String> =
                    Self::complete_rows(&mut *tx, completions, lead).await?.into_iter().collect();
                let mut applied = Vec::with_capacity(finishes.len());
                let mut events = Vec::with_capacity(finishes.len());
                for f in finishes {
                    if let Outcome::Completed { provider, .. } = &f.outcome {
                        let user = completed.get(&f.task_id.as_uuid());
                        applied.push(user.is_some());
                        if let Some(user) = user {
                            let user = $crate::store::sql::stored_user(user, || {
                                format!("user_id {user:?}")
                            })?;
                            events.push($crate::store::sql::NewEvent::completed(
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
                            let mut qb = sqlx::QueryBuilder::<$db>::new(lead.take());
                            qb.push(
                                "UPDATE tasks SET status = 'pending', \
                                 retry_count = retry_count + 1, error = ",
                            );
                            qb.push_bind(sqlx::types::Json(serde_json::json!(error)))
                                .push(", provider = ")
                                .push_bind(error.provider.clone())
                                .push(", run_after = ")
                                .push_bind(*run_after);
                            (qb, error)
                        }
                        Outcome::Failed { error } => {
                            let mut qb = sqlx::QueryBuilder::<$db>::new(lead.take());
                            qb.push("UPDATE tasks SET status = 'failed', error = ");
                            qb.push_bind(sqlx::types::Json(serde_json::json!(error)))
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
                    let row: Option<(String, i32)> =
                        qb.build_query_as().fetch_optional(&mut *tx).await?;
                    applied.push(row.is_some());
                    if let Some((user, retry_count)) = row {
                        let user = $crate::store::sql::stored_user(&user, || "user_id".into())?;
                        events.push(match &f.outcome {
                            Outcome::Retry { run_after, .. } => {
                                let attempt = u32::try_from(retry_count).map_err(|_| {
                                    $crate::store::StoreError::Corrupt("retry_count".into())
                                })?;
                                $crate::store::sql::NewEvent::retrying(
                                    f.task_id, user, error, *run_after, attempt, f.at,
                                )
                            }
                            _ => $crate::store::sql::NewEvent::failed(f.task_id, user, error, f.at),
                        });
                    }
                }
                Ok((applied, events))
            }

            /// Appends `id1, id2, ...` as bound parameters, for an `IN (...)` list.
            fn push_ids(qb: &mut sqlx::QueryBuilder<$db>, ids: &[$crate::domain::TaskId]) {
                let mut list = qb.separated(", ");
                for id in ids {
                    list.push_bind(id.as_uuid());
                }
            }

            async fn fetch_tasks(
                &self,
                mut qb: sqlx::QueryBuilder<$db>,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::row::TaskRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                $crate::store::row::into_tasks(rows)
            }

            fn select() -> sqlx::QueryBuilder<$db> {
                sqlx::QueryBuilder::new(format!(
                    "SELECT {} FROM tasks WHERE 1 = 1",
                    $crate::store::row::TASK_COLUMNS
                ))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::TaskStore for $store {
            async fn insert_tasks(
                &self,
                tasks: Vec<$crate::domain::Task>,
            ) -> Result<Vec<$crate::store::Inserted>, $crate::store::StoreError> {
                self.insert_tasks_impl(tasks).await
            }

            async fn claim(
                &self,
                ids: &[$crate::domain::TaskId],
                worker: &$crate::domain::WorkerId,
                lease_until: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                self.claim_impl(ids, worker, lease_until, now).await
            }

            async fn finish(
                &self,
                finishes: &[$crate::store::Finish],
            ) -> Result<Vec<bool>, $crate::store::StoreError> {
                self.finish_impl(finishes).await
            }

            async fn find_by_id(
                &self,
                id: $crate::domain::TaskId,
            ) -> Result<Option<$crate::domain::Task>, $crate::store::StoreError> {
                let mut qb = Self::select();
                qb.push(" AND id = ").push_bind(id.as_uuid());
                Ok(self.fetch_tasks(qb).await?.pop())
            }



            async fn cancel(
                &self,
                id: $crate::domain::TaskId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<($crate::domain::Task, bool)>, $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE tasks SET status = 'cancelled', worker_id = NULL, \
                     lease_expires_at = NULL, updated_at = ",
                );
                qb.push_bind(now)
                    .push(", completed_at = ")
                    .push_bind(now)
                    .push(" WHERE id = ")
                    .push_bind(id.as_uuid())
                    .push(format!(
                        " AND status IN ('pending', 'processing') RETURNING {}",
                        $crate::store::row::TASK_COLUMNS
                    ));
                let row: Option<$crate::store::row::TaskRow> =
                    qb.build_query_as().fetch_optional(&mut *tx).await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(self.find_by_id(id).await?.map(|t| (t, false)));
                };
                let task: $crate::domain::Task = row.try_into()?;
                let event = $crate::store::sql::NewEvent::cancelled(&task, now);
                let stored = Self::insert_events(&mut tx, vec![event]).await?;
                tx.commit().await?;
                self.publisher.publish(stored);
                Ok(Some((task, true)))
            }

            async fn record_progress_many(
                &self,
                updates: Vec<($crate::domain::TaskId, Option<u8>, serde_json::Value)>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<bool>, $crate::store::StoreError> {
                if updates.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.writer.begin().await?;
                // Progress is frequent and informational: on PostgreSQL it commits without
                // waiting for its WAL flush (a database crash can lose the last progress events,
                // ids included, never a task's state).
                if <$db as sqlx::Database>::NAME == "PostgreSQL" {
                    sqlx::query("SET LOCAL synchronous_commit = off")
                        .execute(&mut *tx)
                        .await?;
                }
                let mut applied = Vec::with_capacity(updates.len());
                let mut events = Vec::with_capacity(updates.len());
                let postgres = <$db as sqlx::Database>::NAME == "PostgreSQL";
                for (task_id, progress, data) in updates {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE tasks SET progress = COALESCE(",
                    );
                    qb.push_bind(progress.map(i32::from))
                        .push(", progress), updated_at = ")
                        .push_bind(now);
                    if postgres {
                        // Never wait for a task another transaction holds (it is finishing,
                        // and its outcome carries the whole answer): with several tasks per
                        // transaction, waiting could deadlock with a batch of completions
                        // that locks the same tasks in another order.
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
                    let user: Option<String> =
                        qb.build_query_scalar().fetch_optional(&mut *tx).await?;
                    applied.push(user.is_some());
                    let Some(user) = user else { continue };
                    let user = $crate::store::sql::stored_user(&user, || "user_id".into())?;
                    events.push($crate::store::sql::NewEvent::progress(
                        task_id, user, progress, data, now,
                    ));
                }
                if events.is_empty() {
                    tx.rollback().await?;
                    return Ok(applied);
                }
                let stored = Self::insert_events(&mut tx, events).await?;
                tx.commit().await?;
                self.publisher.publish(stored);
                Ok(applied)
            }

            async fn find_pending_tasks(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut qb = Self::select();
                qb.push(" AND status = 'pending' ORDER BY priority DESC, created_at LIMIT ")
                    .push_bind(i64::from(limit));
                self.fetch_tasks(qb).await
            }




            async fn list(
                &self,
                filter: &$crate::store::TaskFilter,
                page: &$crate::domain::PageRequest,
            ) -> Result<$crate::domain::Page<$crate::domain::Task>, $crate::store::StoreError>
            {
                let mut qb = Self::select();
                if let Some(user) = &filter.user_id {
                    qb.push(" AND user_id = ").push_bind(user.as_str().to_owned());
                }
                if let Some(status) = filter.status {
                    qb.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(t) = filter.task_type {
                    qb.push(" AND task_type = ").push_bind(t.as_str());
                }
                if let Some(class) = filter.error_class {
                    qb.push(concat!(" AND ", $error_class, " = ")).push_bind(class.as_str());
                }
                if let Some((at, id)) = page.after {
                    qb.push(" AND (created_at < ")
                        .push_bind(at)
                        .push(" OR (created_at = ")
                        .push_bind(at)
                        .push(" AND id < ")
                        .push_bind(id.as_uuid())
                        .push("))");
                }
                qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                    .push_bind(i64::from(page.size) + 1);
                let mut items = self.fetch_tasks(qb).await?;
                let next_page_token = if items.len() > page.size as usize {
                    items.truncate(page.size as usize);
                    items.last().map(|t| $crate::domain::encode_token(t.created_at, t.id))
                } else {
                    None
                };
                Ok($crate::domain::Page { items, next_page_token })
            }

            async fn count_active_by_user(
                &self,
                user: &$crate::domain::UserId,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) FROM tasks WHERE status IN ('pending', 'processing') \
                     AND user_id = ",
                );
                qb.push_bind(user.as_str().to_owned());
                let n: i64 = qb.build_query_scalar().fetch_one(&self.pool).await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }




            async fn events_for_task(
                &self,
                id: $crate::domain::TaskId,
            ) -> Result<Vec<$crate::domain::TaskEvent>, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT task_id, user_id, event_type, data, created_at FROM task_events \
                     WHERE task_id = ",
                );
                qb.push_bind(id.as_uuid()).push(" ORDER BY id");
                let rows: Vec<$crate::store::row::EventRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn register_worker(
                &self,
                worker: &$crate::domain::WorkerId,
                instance: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO workers (id, instance, status, started_at, last_heartbeat) ",
                );
                qb.push_values(std::iter::once(()), |mut b, ()| {
                    b.push_bind(worker.as_str().to_owned())
                        .push_bind(instance.to_owned())
                        .push_bind("active")
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (id) DO UPDATE SET status = 'active', \
                     last_heartbeat = excluded.last_heartbeat",
                );
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn heartbeat(
                &self,
                worker: &$crate::domain::WorkerId,
                running: &[$crate::domain::TaskId],
                lease_until: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE workers SET last_heartbeat = ");
                qb.push_bind(now).push(" WHERE id = ").push_bind(worker.as_str().to_owned());
                qb.build().execute(&mut *tx).await?;
                let mut renewed = 0;
                for chunk in running.chunks($crate::store::sql::IN_CHUNK) {
                    let mut qb =
                        sqlx::QueryBuilder::<$db>::new("UPDATE tasks SET lease_expires_at = ");
                    qb.push_bind(lease_until)
                        .push(" WHERE status = 'processing' AND worker_id = ")
                        .push_bind(worker.as_str().to_owned())
                        .push(" AND id IN (");
                    Self::push_ids(&mut qb, chunk);
                    qb.push(")");
                    renewed += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(renewed)
            }

            async fn unregister_worker(
                &self,
                worker: &$crate::domain::WorkerId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE workers SET status = 'stopped', last_heartbeat = ",
                );
                qb.push_bind(now).push(" WHERE id = ").push_bind(worker.as_str().to_owned());
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn reap_stale_workers(
                &self,
                older_than: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::domain::WorkerId>, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE workers SET status = 'dead' WHERE status = 'active' \
                     AND last_heartbeat < ",
                );
                qb.push_bind(older_than).push(" RETURNING id");
                let ids: Vec<String> = qb.build_query_scalar().fetch_all(&self.writer).await?;
                Ok(ids.into_iter().map($crate::domain::WorkerId::from_stored).collect())
            }

            async fn requeue_expired(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                use $crate::domain::{ErrorClass, TaskError, TaskStatus};
                let error = TaskError::new(
                    ErrorClass::Retryable,
                    "worker lost: its lease expired before the attempt finished",
                );
                let mut tx = self.writer.begin().await?;
                // SET expressions see the row as it was, so every CASE tests the old count.
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE tasks SET \
                     status = CASE WHEN retry_count < max_retries THEN 'pending' ELSE 'failed' END, \
                     retry_count = CASE WHEN retry_count < max_retries THEN retry_count + 1 \
                       ELSE retry_count END, \
                     completed_at = CASE WHEN retry_count < max_retries THEN NULL ELSE ",
                );
                qb.push_bind(now)
                    .push(" END, worker_id = NULL, lease_expires_at = NULL, error = ")
                    .push_bind(sqlx::types::Json(serde_json::json!(error)))
                    .push(", run_after = ")
                    .push_bind(now)
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(
                        " WHERE id IN (SELECT id FROM tasks WHERE status = 'processing' \
                         AND lease_expires_at < ",
                    )
                    .push_bind(now)
                    .push(" ORDER BY lease_expires_at LIMIT ")
                    .push_bind(i64::from(limit))
                    .push(") AND status = 'processing' AND lease_expires_at < ")
                    .push_bind(now)
                    .push(format!(" RETURNING {}", $crate::store::row::TASK_COLUMNS));
                let rows: Vec<$crate::store::row::TaskRow> =
                    qb.build_query_as().fetch_all(&mut *tx).await?;
                let tasks = $crate::store::row::into_tasks(rows)?;
                let events = tasks
                    .iter()
                    .map(|t| $crate::store::sql::NewEvent::lease_expired(t, &error, now))
                    .collect();
                let stored = Self::insert_events(&mut tx, events).await?;
                tx.commit().await?;
                self.publisher.publish(stored);
                Ok(tasks.into_iter().filter(|t| t.status == TaskStatus::Pending).collect())
            }

            async fn still_held(
                &self,
                ids: &[$crate::domain::TaskId],
                worker: &$crate::domain::WorkerId,
            ) -> Result<Vec<$crate::domain::TaskId>, $crate::store::StoreError> {
                let mut held = Vec::with_capacity(ids.len());
                for chunk in ids.chunks($crate::store::sql::IN_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id FROM tasks WHERE status = 'processing' AND worker_id = ",
                    );
                    qb.push_bind(worker.as_str().to_owned()).push(" AND id IN (");
                    Self::push_ids(&mut qb, chunk);
                    qb.push(")");
                    let rows: Vec<uuid::Uuid> =
                        qb.build_query_scalar().fetch_all(&self.pool).await?;
                    held.extend(rows.into_iter().map($crate::domain::TaskId::from_uuid));
                }
                Ok(held)
            }

            async fn release(
                &self,
                worker: &$crate::domain::WorkerId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE tasks SET status = 'pending', worker_id = NULL, \
                     lease_expires_at = NULL, run_after = ",
                );
                qb.push_bind(now)
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(" WHERE status = 'processing' AND worker_id = ")
                    .push_bind(worker.as_str().to_owned())
                    .push(format!(" RETURNING {}", $crate::store::row::TASK_COLUMNS));
                let rows: Vec<$crate::store::row::TaskRow> =
                    qb.build_query_as().fetch_all(&mut *tx).await?;
                let tasks = $crate::store::row::into_tasks(rows)?;
                let events = tasks
                    .iter()
                    .map(|t| $crate::store::sql::NewEvent::handed_back(t, now))
                    .collect();
                let stored = Self::insert_events(&mut tx, events).await?;
                tx.commit().await?;
                self.publisher.publish(stored);
                Ok(tasks)
            }

            async fn requeue_failed(
                &self,
                ids: &[$crate::domain::TaskId],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut requeued = Vec::with_capacity(ids.len());
                for chunk in ids.chunks($crate::store::sql::IN_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE tasks SET status = 'pending', retry_count = 0, \
                         completed_at = NULL, worker_id = NULL, lease_expires_at = NULL, \
                         run_after = ",
                    );
                    qb.push_bind(now)
                        .push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE status = 'failed' AND id IN (");
                    Self::push_ids(&mut qb, chunk);
                    qb.push(format!(") RETURNING {}", $crate::store::row::TASK_COLUMNS));
                    let rows: Vec<$crate::store::row::TaskRow> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    requeued.extend($crate::store::row::into_tasks(rows)?);
                }
                let events = requeued
                    .iter()
                    .map(|t| $crate::store::sql::NewEvent::requeued_dead_letter(t, now))
                    .collect();
                let stored = Self::insert_events(&mut tx, events).await?;
                tx.commit().await?;
                self.publisher.publish(stored);
                Ok(requeued)
            }

            async fn purge_failed(
                &self,
                ids: &[$crate::domain::TaskId],
            ) -> Result<u64, $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut purged = 0;
                for chunk in ids.chunks($crate::store::sql::IN_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM task_events WHERE task_id IN \
                         (SELECT id FROM tasks WHERE status = 'failed' AND id IN (",
                    );
                    Self::push_ids(&mut qb, chunk);
                    qb.push("))");
                    qb.build().execute(&mut *tx).await?;
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM tasks WHERE status = 'failed' AND id IN (",
                    );
                    Self::push_ids(&mut qb, chunk);
                    qb.push(")");
                    purged += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(purged)
            }

            async fn task_stats(
                &self,
                since: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::TaskStats, $crate::store::StoreError> {
                let counts: Vec<(String, i64)> =
                    sqlx::query_as("SELECT status, COUNT(*) FROM tasks GROUP BY status")
                        .fetch_all(&self.pool)
                        .await?;
                let mut stats = $crate::store::TaskStats::default();
                for (status, n) in counts {
                    let n = u64::try_from(n).unwrap_or(0);
                    match status.as_str() {
                        "pending" => stats.pending = n,
                        "processing" => stats.processing = n,
                        "completed" => stats.completed = n,
                        "failed" => stats.failed = n,
                        "cancelled" => stats.cancelled = n,
                        _ => {}
                    }
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT created_at, started_at, completed_at FROM tasks \
                     WHERE status IN ('completed', 'failed') AND created_at >= ",
                );
                qb.push_bind(since).push(
                    " AND started_at IS NOT NULL AND completed_at IS NOT NULL \
                     ORDER BY created_at DESC LIMIT 10000",
                );
                type Times = (
                    chrono::DateTime<chrono::Utc>,
                    chrono::DateTime<chrono::Utc>,
                    chrono::DateTime<chrono::Utc>,
                );
                let rows: Vec<Times> = qb.build_query_as().fetch_all(&self.pool).await?;
                if !rows.is_empty() {
                    let ms = |d: chrono::TimeDelta| d.num_milliseconds().max(0) as u64;
                    let n = rows.len() as u64;
                    let wait: u64 = rows.iter().map(|(c, s, _)| ms(*s - *c)).sum();
                    let busy: u64 = rows.iter().map(|(_, s, f)| ms(*f - *s)).sum();
                    stats.average_wait_ms = wait / n;
                    stats.average_processing_ms = busy / n;
                    stats.sample_size = n;
                }
                Ok(stats)
            }

            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::TaskStoreTesting for $store {
            async fn save(
                &self,
                t: &$crate::domain::Task,
            ) -> Result<(), $crate::store::StoreError> {
                let t = $crate::store::sql::at_micros(t.clone());
                let mut qb = sqlx::QueryBuilder::<$db>::default();
                Self::push_tasks_insert(&mut qb, std::slice::from_ref(&t));
                qb.push(
                    " ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                     priority = excluded.priority, payload = excluded.payload, \
                     result = excluded.result, error = excluded.error, \
                     progress = excluded.progress, retry_count = excluded.retry_count, \
                     attempts = excluded.attempts, \
                     max_retries = excluded.max_retries, provider = excluded.provider, \
                     worker_id = excluded.worker_id, lease_expires_at = excluded.lease_expires_at, \
                     timeout_ms = excluded.timeout_ms, run_after = excluded.run_after, \
                     queue = excluded.queue, \
                     updated_at = excluded.updated_at, started_at = excluded.started_at, \
                     completed_at = excluded.completed_at",
                );
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn delete(
                &self,
                id: $crate::domain::TaskId,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new("DELETE FROM task_events WHERE task_id = ");
                qb.push_bind(id.as_uuid());
                qb.build().execute(&mut *tx).await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new("DELETE FROM tasks WHERE id = ");
                qb.push_bind(id.as_uuid());
                let n = qb.build().execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                Ok(n > 0)
            }

            async fn find_processing_tasks(
                &self,
                provider: Option<&str>,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut qb = Self::select();
                qb.push(" AND status = 'processing'");
                if let Some(p) = provider {
                    qb.push(" AND provider = ").push_bind(p.to_owned());
                }
                qb.push(" ORDER BY started_at");
                self.fetch_tasks(qb).await
            }

            async fn find_failed_tasks(
                &self,
                max_retries: u32,
                older_than: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut qb = Self::select();
                qb.push(" AND status = 'failed' AND retry_count < ")
                    .push_bind(max_retries as i32)
                    .push(" AND updated_at < ")
                    .push_bind(older_than)
                    .push(" ORDER BY updated_at LIMIT ")
                    .push_bind(i64::from(limit));
                self.fetch_tasks(qb).await
            }

            async fn find_timed_out_tasks(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut qb = Self::select();
                qb.push(" AND status = 'processing' AND lease_expires_at < ")
                    .push_bind(now)
                    .push(" ORDER BY lease_expires_at");
                self.fetch_tasks(qb).await
            }

            async fn find_by_type(
                &self,
                task_type: $crate::domain::TaskType,
                status: Option<$crate::domain::TaskStatus>,
                limit: u32,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut qb = Self::select();
                qb.push(" AND task_type = ").push_bind(task_type.as_str());
                if let Some(s) = status {
                    qb.push(" AND status = ").push_bind(s.as_str());
                }
                qb.push(" ORDER BY created_at DESC LIMIT ").push_bind(i64::from(limit));
                self.fetch_tasks(qb).await
            }

            async fn find_by_related_entity(
                &self,
                entity_type: &str,
                entity_id: &str,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut qb = Self::select();
                qb.push(" AND related_entity_type = ")
                    .push_bind(entity_type.to_owned())
                    .push(" AND related_entity_id = ")
                    .push_bind(entity_id.to_owned())
                    .push(" ORDER BY created_at DESC");
                self.fetch_tasks(qb).await
            }

            async fn find_tasks_by_worker(
                &self,
                worker: &$crate::domain::WorkerId,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut qb = Self::select();
                qb.push(" AND worker_id = ")
                    .push_bind(worker.as_str().to_owned())
                    .push(" AND status = 'processing' ORDER BY started_at");
                self.fetch_tasks(qb).await
            }
        }
    };
}

pub(crate) use impl_task_store;
