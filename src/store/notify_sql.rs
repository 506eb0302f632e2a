//! The SQL of [`NotificationStore`](super::NotificationStore), written once for both databases
//! (see `sql.rs` for why a macro).

/// Implements [`NotificationStore`](super::NotificationStore) for `$store` (with `pool` for
/// reads and `writer` for writes) on database `$db`.
macro_rules! impl_notification_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::NotificationStore for $store {
            async fn events_after(
                &self,
                user: &$crate::domain::UserId,
                after: u64,
                task: Option<$crate::domain::TaskId>,
                limit: u32,
            ) -> Result<Vec<$crate::domain::StoredEvent>, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM task_events WHERE user_id = ",
                    $crate::store::row::STORED_EVENT_COLUMNS
                ));
                qb.push_bind(user.as_str().to_owned())
                    .push(" AND user_seq > ")
                    .push_bind(i64::try_from(after).unwrap_or(i64::MAX));
                if let Some(task) = task {
                    qb.push(" AND task_id = ").push_bind(task.as_uuid());
                }
                qb.push(" ORDER BY user_seq LIMIT ")
                    .push_bind(i64::from(limit));
                let rows: Vec<$crate::store::row::StoredEventRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                $crate::store::row::into_stored_events(rows)
            }

            async fn event_bounds(
                &self,
                user: &$crate::domain::UserId,
            ) -> Result<$crate::store::EventBounds, $crate::store::StoreError> {
                // The counter first: an event committed between the two reads then shows as
                // retained, never as a hole below `oldest`.
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT last_id FROM user_event_counters WHERE user_id = ",
                );
                qb.push_bind(user.as_str().to_owned());
                let last: Option<i64> = qb.build_query_scalar().fetch_optional(&self.pool).await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT MIN(user_seq) FROM task_events WHERE user_id = ",
                );
                qb.push_bind(user.as_str().to_owned());
                let oldest: Option<i64> = qb.build_query_scalar().fetch_one(&self.pool).await?;
                Ok($crate::store::EventBounds {
                    oldest: oldest.and_then(|v| u64::try_from(v).ok()),
                    last: last.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
                })
            }

            async fn last_ids(
                &self,
                users: &[$crate::domain::UserId],
            ) -> Result<Vec<($crate::domain::UserId, u64)>, $crate::store::StoreError> {
                let mut out = Vec::with_capacity(users.len());
                for chunk in users.chunks($crate::store::sql::IN_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT user_id, last_id FROM user_event_counters WHERE user_id IN (",
                    );
                    let mut list = qb.separated(", ");
                    for u in chunk {
                        list.push_bind(u.as_str().to_owned());
                    }
                    qb.push(")");
                    let rows: Vec<(String, i64)> =
                        qb.build_query_as().fetch_all(&self.pool).await?;
                    for (user, last) in rows {
                        let user = $crate::domain::UserId::parse(&user).map_err(|_| {
                            $crate::store::StoreError::Corrupt("counter user_id".into())
                        })?;
                        out.push((user, u64::try_from(last).unwrap_or(0)));
                    }
                }
                Ok(out)
            }

            async fn delete_events_before(
                &self,
                cutoff: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "DELETE FROM task_events WHERE id IN \
                     (SELECT id FROM task_events WHERE created_at < ",
                );
                qb.push_bind(cutoff)
                    .push(" LIMIT ")
                    .push_bind(i64::from(limit))
                    .push(")");
                let n = qb.build().execute(&self.writer).await?.rows_affected();
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "DELETE FROM notification_sessions WHERE ended_at < ",
                );
                qb.push_bind(cutoff);
                qb.build().execute(&self.writer).await?;
                Ok(n)
            }

            async fn register_session(
                &self,
                s: &$crate::store::NotificationSession,
            ) -> Result<(), $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "INSERT INTO notification_sessions ({}) ",
                    $crate::store::row::SESSION_COLUMNS
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
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn unregister_session(
                &self,
                id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new("UPDATE notification_sessions SET ended_at = ");
                qb.push_bind(now)
                    .push(", last_seen = ")
                    .push_bind(now)
                    .push(" WHERE id = ")
                    .push_bind(id)
                    .push(" AND ended_at IS NULL");
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn find_active_sessions_by_user(
                &self,
                user: &$crate::domain::UserId,
            ) -> Result<Vec<$crate::store::NotificationSession>, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM notification_sessions WHERE ended_at IS NULL AND user_id = ",
                    $crate::store::row::SESSION_COLUMNS
                ));
                qb.push_bind(user.as_str().to_owned())
                    .push(" ORDER BY connected_at");
                let rows: Vec<$crate::store::row::SessionRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn mark_as_delivered(
                &self,
                session: uuid::Uuid,
                id: u64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                let id = i64::try_from(id).unwrap_or(i64::MAX);
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new("UPDATE notification_sessions SET last_seen = ");
                qb.push_bind(now)
                    .push(", last_delivered_id = CASE WHEN last_delivered_id < ")
                    .push_bind(id)
                    .push(" THEN ")
                    .push_bind(id)
                    .push(" ELSE last_delivered_id END WHERE id = ")
                    .push_bind(session);
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn mark_sessions_delivered(
                &self,
                sessions: &[(uuid::Uuid, u64)],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                if sessions.is_empty() {
                    return Ok(());
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new("WITH v (id, d) AS (");
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
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn end_stale_sessions(
                &self,
                seen_before: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE notification_sessions SET ended_at = last_seen \
                     WHERE ended_at IS NULL AND last_seen < ",
                );
                qb.push_bind(seen_before);
                Ok(qb.build().execute(&self.writer).await?.rows_affected())
            }

            async fn find_notifications_by_user(
                &self,
                user: &$crate::domain::UserId,
                since: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<$crate::domain::StoredEvent>, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM task_events WHERE user_id = ",
                    $crate::store::row::STORED_EVENT_COLUMNS
                ));
                qb.push_bind(user.as_str().to_owned())
                    .push(" AND created_at >= ")
                    .push_bind(since)
                    .push(" ORDER BY user_seq LIMIT ")
                    .push_bind(i64::from(limit));
                let rows: Vec<$crate::store::row::StoredEventRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                $crate::store::row::into_stored_events(rows)
            }

            async fn find_undelivered_notifications(
                &self,
                user: &$crate::domain::UserId,
                limit: u32,
            ) -> Result<Vec<$crate::domain::StoredEvent>, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT COALESCE(MAX(last_delivered_id), 0) FROM notification_sessions \
                     WHERE user_id = ",
                );
                qb.push_bind(user.as_str().to_owned());
                let delivered: i64 = qb.build_query_scalar().fetch_one(&self.pool).await?;
                let delivered = u64::try_from(delivered).unwrap_or(0);
                $crate::store::NotificationStore::events_after(self, user, delivered, None, limit)
                    .await
            }

            async fn insert_stream_ticket(
                &self,
                t: &$crate::store::NewStreamTicket,
            ) -> Result<(), $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
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
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn take_stream_ticket(
                &self,
                hash: &$crate::store::TicketHash,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<$crate::store::StreamGrant>, $crate::store::StoreError> {
                // One statement: the row lock (PostgreSQL) or the single writer (SQLite) lets
                // only one of concurrent uses delete the row, and only the deleter gets it back.
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new("DELETE FROM stream_tickets WHERE hash = ");
                qb.push_bind(hash.to_vec())
                    .push(" AND expires_at > ")
                    .push_bind(now)
                    .push(" RETURNING user_id, role, tier, token_expires_at");
                let row: Option<$crate::store::tickets::GrantRow> =
                    qb.build_query_as().fetch_optional(&self.writer).await?;
                row.map($crate::store::tickets::grant_from_row).transpose()
            }

            async fn delete_expired_stream_tickets(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "DELETE FROM stream_tickets WHERE expires_at <= ",
                );
                qb.push_bind(now);
                Ok(qb.build().execute(&self.writer).await?.rows_affected())
            }
        }
    };
}

pub(crate) use impl_notification_store;
