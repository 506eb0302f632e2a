//! The SQL of [`QueueStore`](super::QueueStore), written once for both databases (see `sql.rs`
//! for why a macro).

/// Implements [`QueueStore`](super::QueueStore) for `$store` (with `pool` for reads and
/// `writer` for writes) on database `$db`.
macro_rules! impl_queue_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn queue_rows(
                &self,
                mut qb: sqlx::QueryBuilder<$db>,
            ) -> Result<Vec<$crate::store::QueueRecord>, $crate::store::StoreError> {
                qb.push(" ORDER BY name");
                let rows: Vec<$crate::store::queues::QueueRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                $crate::store::queues::into_records(rows)
            }

            fn select_queues() -> sqlx::QueryBuilder<$db> {
                sqlx::QueryBuilder::new(format!(
                    "SELECT {} FROM task_queues WHERE 1 = 1",
                    $crate::store::queues::QUEUE_COLUMNS
                ))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::QueueStore for $store {
            async fn sync_queues(
                &self,
                specs: &[$crate::queue::QueueSpec],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::store::QueueRecord>, $crate::store::StoreError> {
                if !specs.is_empty() {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO task_queues (name, queue_type, rate, concurrency, paused, \
                         created_at, updated_at) ",
                    );
                    qb.push_values(specs, |mut b, s| {
                        b.push_bind(s.name.as_str())
                            .push_bind(s.kind.as_str())
                            .push_bind(s.rate.map(|r| r.to_string()))
                            .push_bind(i32::try_from(s.concurrency).unwrap_or(i32::MAX))
                            .push_bind(false)
                            .push_bind(now)
                            .push_bind(now);
                    });
                    qb.push(
                        " ON CONFLICT (name) DO UPDATE SET queue_type = excluded.queue_type, \
                         rate = excluded.rate, concurrency = excluded.concurrency, \
                         updated_at = excluded.updated_at",
                    );
                    qb.build().execute(&self.writer).await?;
                }
                self.list_queues().await
            }

            async fn find_queue(
                &self,
                name: $crate::domain::QueueName,
            ) -> Result<Option<$crate::store::QueueRecord>, $crate::store::StoreError> {
                let mut qb = Self::select_queues();
                qb.push(" AND name = ").push_bind(name.as_str());
                Ok(self.queue_rows(qb).await?.pop())
            }

            async fn list_queues(
                &self,
            ) -> Result<Vec<$crate::store::QueueRecord>, $crate::store::StoreError> {
                self.queue_rows(Self::select_queues()).await
            }

            async fn find_queues_by_type(
                &self,
                kind: $crate::domain::QueueKind,
            ) -> Result<Vec<$crate::store::QueueRecord>, $crate::store::StoreError> {
                let mut qb = Self::select_queues();
                qb.push(" AND queue_type = ").push_bind(kind.as_str());
                self.queue_rows(qb).await
            }

            async fn find_active_queues(
                &self,
            ) -> Result<Vec<$crate::store::QueueRecord>, $crate::store::StoreError> {
                let mut qb = Self::select_queues();
                qb.push(" AND paused = ").push_bind(false);
                self.queue_rows(qb).await
            }

            async fn set_queue_paused(
                &self,
                name: $crate::domain::QueueName,
                paused: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE task_queues SET paused = ");
                qb.push_bind(paused)
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(" WHERE name = ")
                    .push_bind(name.as_str());
                Ok(qb.build().execute(&self.writer).await?.rows_affected() > 0)
            }

            async fn queue_task_stats(
                &self,
                since: chrono::DateTime<chrono::Utc>,
            ) -> Result<
                Vec<($crate::domain::QueueName, $crate::store::TaskStats)>,
                $crate::store::StoreError,
            > {
                let counts: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT queue, status, COUNT(*) FROM tasks GROUP BY queue, status",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT queue, created_at, started_at, completed_at FROM tasks \
                     WHERE status IN ('completed', 'failed') AND created_at >= ",
                );
                qb.push_bind(since).push(
                    " AND started_at IS NOT NULL AND completed_at IS NOT NULL \
                     ORDER BY created_at DESC LIMIT 10000",
                );
                let times: Vec<$crate::store::queues::FinishedTimes> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                $crate::store::queues::fold_stats(counts, times)
            }

            async fn find_expired_tasks(
                &self,
                queue: $crate::domain::QueueName,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<$crate::domain::Task>, $crate::store::StoreError> {
                let mut qb = $crate::store::sql::select_tasks::<$db>();
                qb.push(" AND status = 'processing' AND queue = ")
                    .push_bind(queue.as_str())
                    .push(" AND lease_expires_at < ")
                    .push_bind(now)
                    .push(" ORDER BY lease_expires_at LIMIT ")
                    .push_bind(i64::from(limit));
                $crate::store::sql::SqlStore::sql(self)
                    .fetch_tasks(qb)
                    .await
            }
        }
    };
}

pub(crate) use impl_queue_store;
