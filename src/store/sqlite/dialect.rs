//! What SQLite does its own way in the shared SQL: events numbered from their counters in the
//! same trip as the statements before them, completions in one `UPDATE ... FROM (VALUES ...)`,
//! and its constants.

use sqlx::QueryBuilder;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteQueryResult};

use crate::domain::{NewEvent, StoredEvent};
use crate::store::StoreError;
use crate::store::sql::{CompleteRow, Dialect, IN_CHUNK, INSERT_CHUNK, Lead, RowsAffected};

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Dialect for Sqlite {
    // The class of a task's last error, from its JSON `error` column.
    const ERROR_CLASS: &'static str = "json_extract(error, '$.class')";
    // Commits already wait for no fsync (WAL with `synchronous = NORMAL`).
    const RELAXED_COMMIT: Option<&'static str> = None;
    // One writer: nothing to skip.
    const SKIP_LOCKED: bool = false;

    /// Inserts events, numbering each user's from their counter row. The single writer
    /// connection already serialises every transaction, so numbering needs no more than the
    /// counter update in the same transaction.
    async fn insert_events(
        conn: &mut SqliteConnection,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        insert_events_then(conn, events, &mut Lead::none(), "").await
    }

    /// Completes many tasks in one `UPDATE ... FROM (VALUES ...)`; returns the (id, user) of
    /// each row that applied.
    async fn complete_rows(
        conn: &mut SqliteConnection,
        rows: Vec<CompleteRow>,
        lead: &mut Lead,
    ) -> Result<Vec<(uuid::Uuid, String)>, StoreError> {
        let mut applied = Vec::with_capacity(rows.len());
        // 5 binds a row: well under SQLite's 32,766-variable limit.
        for chunk in rows.chunks(IN_CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(lead.take());
            qb.push(
                "UPDATE tasks SET status = 'completed', progress = 100, result = v.column3, \
                 provider = v.column4, completed_at = v.column5, updated_at = v.column5, \
                 worker_id = NULL, lease_expires_at = NULL FROM (",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.worker_id.clone())
                    .push_bind(sqlx::types::Json(r.result.clone()))
                    .push_bind(r.provider.clone())
                    .push_bind(r.at);
            });
            qb.push(
                ") AS v WHERE tasks.id = v.column1 AND tasks.status = 'processing' \
                 AND tasks.worker_id = v.column2 RETURNING tasks.id, tasks.user_id",
            );
            let done: Vec<(uuid::Uuid, String)> = qb.build_query_as().fetch_all(&mut *conn).await?;
            applied.extend(done);
        }
        Ok(applied)
    }
}

/// [`Dialect::insert_events`] after what `lead` still has to open, then the statement `tail`
/// (e.g. `COMMIT`), all in one trip to the connection's thread (see [`events_after`]).
pub(super) async fn insert_events_then(
    conn: &mut SqliteConnection,
    events: Vec<NewEvent>,
    lead: &mut Lead,
    tail: &'static str,
) -> Result<Vec<StoredEvent>, StoreError> {
    let qb = QueryBuilder::<Sqlite>::new(lead.take());
    events_after(conn, qb, events, tail).await
}

/// Runs the statements already in `qb`, then inserts `events` and runs `tail`, all in one
/// trip: the counters are bumped first and each event's id is read
/// from its counter in SQL (`last_id` minus the events of its user after it), so nothing
/// waits for the counters to come back. The statements before must return no rows.
pub(super) async fn events_after(
    conn: &mut SqliteConnection,
    mut qb: QueryBuilder<Sqlite>,
    events: Vec<NewEvent>,
    tail: &'static str,
) -> Result<Vec<StoredEvent>, StoreError> {
    use std::collections::BTreeMap;
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for e in &events {
        *counts.entry(e.user_id.as_str()).or_default() += 1;
    }
    // How many of its user's events follow each event in this batch.
    let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
    let after: Vec<i64> = events
        .iter()
        .map(|e| {
            let k = seen.entry(e.user_id.as_str()).or_default();
            *k += 1;
            counts[e.user_id.as_str()] - *k
        })
        .collect();
    let counts: Vec<(&str, i64)> = counts.into_iter().collect();
    for chunk in counts.chunks(IN_CHUNK) {
        qb.push("INSERT INTO user_event_counters (user_id, last_id) ");
        qb.push_values(chunk, |mut b, (user, n)| {
            b.push_bind(*user).push_bind(*n);
        });
        qb.push(
            " ON CONFLICT (user_id) DO UPDATE SET last_id = last_id + excluded.last_id \
             RETURNING user_id, last_id; ",
        );
    }
    // Each event's number is its user's counter minus the events of that user after it,
    // read by one join: a scalar subquery per row kept a cursor open per row until the
    // statement ended, and SQLite walks every open cursor each time it opens one, so a
    // batch of n events cost n² steps (14 % of the writer thread at 100-task batches).
    // The CROSS JOIN keeps the VALUES rows the outer loop, so ids follow the batch order.
    // 6 binds a row: well under SQLite's per-statement variable limit.
    let rows: Vec<(&NewEvent, i64)> = events.iter().zip(after).collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        qb.push(
            "INSERT INTO task_events (task_id, user_id, user_seq, event_type, data, \
             created_at) SELECT v.column1, v.column2, c.last_id - v.column3, v.column4, \
             v.column5, v.column6 FROM (",
        );
        qb.push_values(chunk, |mut b, (e, after)| {
            b.push_bind(e.task_id.as_uuid())
                .push_bind(e.user_id.as_str().to_owned())
                .push_bind(*after)
                .push_bind(e.kind.as_str())
                .push_bind(sqlx::types::Json(e.data.clone()))
                .push_bind(chrono::SubsecRound::trunc_subsecs(e.at, 6));
        });
        qb.push(") AS v CROSS JOIN user_event_counters AS c WHERE c.user_id = v.column2; ");
    }
    qb.push(tail);
    if qb.sql().as_str().is_empty() {
        return Ok(Vec::new());
    }
    let last: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut *conn).await?;
    // Per user, the first id of this batch.
    let mut next: BTreeMap<String, i64> = last
        .into_iter()
        .map(|(user, last)| {
            let n = counts
                .iter()
                .find(|(u, _)| *u == user)
                .map_or(0, |(_, n)| *n);
            (user, last - n + 1)
        })
        .collect();
    let mut stored = Vec::with_capacity(events.len());
    for e in events {
        let slot = next
            .get_mut(e.user_id.as_str())
            .ok_or_else(|| StoreError::Corrupt("event counter not returned".into()))?;
        let id = u64::try_from(*slot).unwrap_or(0);
        *slot += 1;
        stored.push(e.stored(id));
    }
    Ok(stored)
}
