//! What PostgreSQL does its own way in the shared SQL: events inserted and numbered in one
//! statement, completions in one `UNNEST` update, and its constants.

use sqlx::postgres::{PgConnection, PgQueryResult};

use super::numbering::number_per_user;
use crate::domain::{NewEvent, StoredEvent};
use crate::store::StoreError;
use crate::store::sql::{CompleteRow, Dialect, Lead, RowsAffected};

impl RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Dialect for sqlx::Postgres {
    // The class of a task's last error, from its JSON `error` column.
    const ERROR_CLASS: &'static str = "error->>'class'";
    const RELAXED_COMMIT: Option<&'static str> = Some("SET LOCAL synchronous_commit = off");
    const SKIP_LOCKED: bool = true;

    /// Inserts events in one statement, numbering each user's from their counter row
    /// ([`number_per_user`]). Returns them with their ids.
    async fn insert_events(
        conn: &mut PgConnection,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let n = events.len();
        let (mut tasks, mut users, mut kinds, mut datas, mut ats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in &events {
            tasks.push(e.task_id.as_uuid());
            users.push(e.user_id.as_str());
            kinds.push(e.kind.as_str());
            datas.push(sqlx::types::Json(&e.data));
            ats.push(e.at);
        }
        let numbered: Vec<(i64, i64)> = sqlx::query_as(concat!(
            "WITH input AS ( \
               SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[], \
                 $5::timestamptz[]) WITH ORDINALITY AS u(task_id, user_id, event_type, data, \
                 created_at, ord) \
             ), ",
            number_per_user!("input", "r.ord"),
            ", ins AS ( \
               INSERT INTO task_events (task_id, user_id, user_seq, event_type, data, created_at) \
               SELECT task_id, user_id, user_seq, event_type, data, created_at FROM numbered \
             ) \
             SELECT ord, user_seq FROM numbered",
        ))
        .bind(tasks)
        .bind(users)
        .bind(kinds)
        .bind(datas)
        .bind(ats)
        .fetch_all(&mut *conn)
        .await?;
        let mut ids = vec![0u64; n];
        for (ord, seq) in numbered {
            if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| ids.get_mut(i)) {
                *slot = u64::try_from(seq).unwrap_or(0);
            }
        }
        Ok(events
            .into_iter()
            .zip(ids)
            .map(|(e, id)| e.stored(id))
            .collect())
    }

    /// Completes many tasks in one statement (arrays through `UNNEST`); returns the
    /// (id, user) of each row that applied.
    async fn complete_rows(
        conn: &mut PgConnection,
        rows: Vec<CompleteRow>,
        // PostgreSQL's transactions are opened by sqlx: there is never anything to lead with.
        _lead: &mut Lead,
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
