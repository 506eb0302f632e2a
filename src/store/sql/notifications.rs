//! [`NotificationStore`] for every [`SqlStore`]: the events a user missed, their bounds and
//! retention, notification sessions and stream tickets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::{Bind, Column, Dialect, IN_CHUNK, RowsAffected, SqlStore};
use crate::domain::{StoredEvent, TaskId, UserId};
use crate::store::{
    EventBounds, NewStreamTicket, NotificationSession, NotificationStore, StoreError, StreamGrant,
    TicketHash, row, tickets,
};

#[async_trait]
impl<S, DB> NotificationStore for S
where
    S: SqlStore<Db = DB>,
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
    Vec<u8>: Column<DB>,
{
    async fn events_after(
        &self,
        user: &UserId,
        after: u64,
        task: Option<TaskId>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT {} FROM task_events WHERE user_id = ",
            row::STORED_EVENT_COLUMNS
        ));
        qb.push_bind(user.as_str().to_owned())
            .push(" AND user_seq > ")
            .push_bind(i64::try_from(after).unwrap_or(i64::MAX));
        if let Some(task) = task {
            qb.push(" AND task_id = ").push_bind(task.as_uuid());
        }
        qb.push(" ORDER BY user_seq LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<row::StoredEventRow> =
            qb.build_query_as().fetch_all(self.sql().reads).await?;
        row::into_stored_events(rows)
    }

    async fn event_bounds(&self, user: &UserId) -> Result<EventBounds, StoreError> {
        // The counter first: an event committed between the two reads then shows as
        // retained, never as a hole below `oldest`.
        let mut qb =
            QueryBuilder::<DB>::new("SELECT last_id FROM user_event_counters WHERE user_id = ");
        qb.push_bind(user.as_str().to_owned());
        let last: Option<i64> = qb
            .build_query_scalar()
            .fetch_optional(self.sql().reads)
            .await?;
        let mut qb =
            QueryBuilder::<DB>::new("SELECT MIN(user_seq) FROM task_events WHERE user_id = ");
        qb.push_bind(user.as_str().to_owned());
        let oldest: Option<i64> = qb.build_query_scalar().fetch_one(self.sql().reads).await?;
        Ok(EventBounds {
            oldest: oldest.and_then(|v| u64::try_from(v).ok()),
            last: last.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
        })
    }

    async fn last_ids(&self, users: &[UserId]) -> Result<Vec<(UserId, u64)>, StoreError> {
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(IN_CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT user_id, last_id FROM user_event_counters WHERE user_id IN (",
            );
            let mut list = qb.separated(", ");
            for u in chunk {
                list.push_bind(u.as_str().to_owned());
            }
            qb.push(")");
            let rows: Vec<(String, i64)> = qb.build_query_as().fetch_all(self.sql().reads).await?;
            for (user, last) in rows {
                let user = UserId::parse(&user)
                    .map_err(|_| StoreError::Corrupt("counter user_id".into()))?;
                out.push((user, u64::try_from(last).unwrap_or(0)));
            }
        }
        Ok(out)
    }

    async fn delete_events_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "DELETE FROM task_events WHERE id IN \
             (SELECT id FROM task_events WHERE created_at < ",
        );
        qb.push_bind(cutoff)
            .push(" LIMIT ")
            .push_bind(i64::from(limit))
            .push(")");
        let n = qb.build().execute(self.sql().writes).await?.rows_affected();
        let mut qb = QueryBuilder::<DB>::new("DELETE FROM notification_sessions WHERE ended_at < ");
        qb.push_bind(cutoff);
        qb.build().execute(self.sql().writes).await?;
        Ok(n)
    }

    async fn register_session(&self, s: &NotificationSession) -> Result<(), StoreError> {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "INSERT INTO notification_sessions ({}) ",
            row::SESSION_COLUMNS
        ));
        qb.push_values(std::iter::once(s), |mut b, s| {
            b.push_bind(s.id)
                .push_bind(s.user_id.as_str().to_owned())
                .push_bind(s.instance.clone())
                .push_bind(s.transport.as_str())
                .push_bind(s.connected_at)
                .push_bind(s.last_seen)
                .push_bind(i64::try_from(s.last_delivered_id).unwrap_or(i64::MAX));
        });
        qb.build().execute(self.sql().writes).await?;
        Ok(())
    }

    async fn unregister_session(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut qb = QueryBuilder::<DB>::new("UPDATE notification_sessions SET ended_at = ");
        qb.push_bind(now)
            .push(", last_seen = ")
            .push_bind(now)
            .push(" WHERE id = ")
            .push_bind(id)
            .push(" AND ended_at IS NULL");
        qb.build().execute(self.sql().writes).await?;
        Ok(())
    }

    async fn find_active_sessions_by_user(
        &self,
        user: &UserId,
    ) -> Result<Vec<NotificationSession>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT {} FROM notification_sessions WHERE ended_at IS NULL AND user_id = ",
            row::SESSION_COLUMNS
        ));
        qb.push_bind(user.as_str().to_owned())
            .push(" ORDER BY connected_at");
        let rows: Vec<row::SessionRow> = qb.build_query_as().fetch_all(self.sql().reads).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn mark_as_delivered(
        &self,
        session: Uuid,
        id: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        let mut qb = QueryBuilder::<DB>::new("UPDATE notification_sessions SET last_seen = ");
        qb.push_bind(now)
            .push(", last_delivered_id = CASE WHEN last_delivered_id < ")
            .push_bind(id)
            .push(" THEN ")
            .push_bind(id)
            .push(" ELSE last_delivered_id END WHERE id = ")
            .push_bind(session);
        qb.build().execute(self.sql().writes).await?;
        Ok(())
    }

    async fn mark_sessions_delivered(
        &self,
        sessions: &[(Uuid, u64)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let mut qb = QueryBuilder::<DB>::new("WITH v (id, d) AS (");
        qb.push_values(sessions, |mut b, (id, delivered)| {
            b.push_bind(*id)
                .push_bind(i64::try_from(*delivered).unwrap_or(i64::MAX));
        });
        qb.push(") UPDATE notification_sessions SET last_seen = ")
            .push_bind(now)
            .push(
                ", last_delivered_id = CASE WHEN notification_sessions.last_delivered_id \
                 < v.d THEN v.d ELSE notification_sessions.last_delivered_id END \
                 FROM v WHERE notification_sessions.id = v.id \
                 AND notification_sessions.ended_at IS NULL",
            );
        qb.build().execute(self.sql().writes).await?;
        Ok(())
    }

    async fn end_stale_sessions(&self, seen_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE notification_sessions SET ended_at = last_seen \
             WHERE ended_at IS NULL AND last_seen < ",
        );
        qb.push_bind(seen_before);
        Ok(qb.build().execute(self.sql().writes).await?.rows_affected())
    }

    async fn find_notifications_by_user(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT {} FROM task_events WHERE user_id = ",
            row::STORED_EVENT_COLUMNS
        ));
        qb.push_bind(user.as_str().to_owned())
            .push(" AND created_at >= ")
            .push_bind(since)
            .push(" ORDER BY user_seq LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<row::StoredEventRow> =
            qb.build_query_as().fetch_all(self.sql().reads).await?;
        row::into_stored_events(rows)
    }

    async fn find_undelivered_notifications(
        &self,
        user: &UserId,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT COALESCE(MAX(last_delivered_id), 0) FROM notification_sessions \
             WHERE user_id = ",
        );
        qb.push_bind(user.as_str().to_owned());
        let delivered: i64 = qb.build_query_scalar().fetch_one(self.sql().reads).await?;
        let delivered = u64::try_from(delivered).unwrap_or(0);
        NotificationStore::events_after(self, user, delivered, None, limit).await
    }

    async fn insert_stream_ticket(&self, t: &NewStreamTicket) -> Result<(), StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO stream_tickets \
             (hash, user_id, role, tier, token_expires_at, expires_at) ",
        );
        qb.push_values(std::iter::once(t), |mut b, t| {
            b.push_bind(t.hash.to_vec())
                .push_bind(t.grant.user_id.as_str().to_owned())
                .push_bind(t.grant.role.as_str())
                .push_bind(t.grant.tier.clone())
                .push_bind(t.grant.token_expires_at)
                .push_bind(t.expires_at);
        });
        qb.build().execute(self.sql().writes).await?;
        Ok(())
    }

    async fn take_stream_ticket(
        &self,
        hash: &TicketHash,
        now: DateTime<Utc>,
    ) -> Result<Option<StreamGrant>, StoreError> {
        // One statement: the row lock (PostgreSQL) or the single writer (SQLite) lets
        // only one of concurrent uses delete the row, and only the deleter gets it back.
        let mut qb = QueryBuilder::<DB>::new("DELETE FROM stream_tickets WHERE hash = ");
        qb.push_bind(hash.to_vec())
            .push(" AND expires_at > ")
            .push_bind(now)
            .push(" RETURNING user_id, role, tier, token_expires_at");
        let row: Option<tickets::GrantRow> = qb
            .build_query_as()
            .fetch_optional(self.sql().writes)
            .await?;
        row.map(tickets::grant_from_row).transpose()
    }

    async fn delete_expired_stream_tickets(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut qb = QueryBuilder::<DB>::new("DELETE FROM stream_tickets WHERE expires_at <= ");
        qb.push_bind(now);
        Ok(qb.build().execute(self.sql().writes).await?.rows_affected())
    }
}
