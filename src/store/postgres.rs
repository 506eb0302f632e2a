//! PostgreSQL task store (clustered mode): shared by every instance.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::Connection;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Executor, SqlSafeStr};

use super::EventPublisher;
use super::sql::{CompleteRow, Dialect, Lead, NewEvent, RowsAffected, Sql, SqlStore};
use super::wal_flush::WalFlush;
use super::{AfterCommit, StoreError};
use crate::domain::StoredEvent;

/// Connections of the asynchronous-commit pool: one each for the claim and outcome loops, and
/// one to spare.
const FAST_CONNECTIONS: u32 = 3;
/// Connections of the submit pool: the submit loop has one batch in flight; one to spare.
const SUBMIT_CONNECTIONS: u32 = 2;
/// Rows of `wal_flush_marks` that instances choose from.
const FLUSH_SLOTS: i32 = 1024;

/// SQL: the CTEs `counts`, `bumped` and `numbered` that give every row of the CTE `$rows` (which
/// has a `user_id`) its owner's next event id, `user_seq`, in the order `$order` (over alias `r`)
/// within each owner. Each owner's counter row is bumped by their count in the same statement,
/// owners in sorted order, so concurrent statements lock counters in one order and cannot
/// deadlock; ids are gapless in commit order because the row lock serialises one owner's writers.
macro_rules! number_per_user {
    ($rows:literal, $order:literal) => {
        concat!(
            "counts AS (SELECT user_id, COUNT(*) AS n FROM ",
            $rows,
            " GROUP BY user_id), ",
            "bumped AS (INSERT INTO user_event_counters AS c (user_id, last_id) ",
            "SELECT user_id, n FROM counts ORDER BY user_id ",
            "ON CONFLICT (user_id) DO UPDATE SET last_id = c.last_id + excluded.last_id ",
            "RETURNING user_id, last_id), ",
            "numbered AS (SELECT r.*, b.last_id - k.n + ROW_NUMBER() OVER ",
            "(PARTITION BY r.user_id ORDER BY ",
            $order,
            ") AS user_seq FROM ",
            $rows,
            " r JOIN counts k USING (user_id) JOIN bumped b USING (user_id))"
        )
    };
}
pub(super) use number_per_user;

/// A pooled connection idle this long is pinged before use.
const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// Pings a pooled connection before use only if it sat idle for [`IDLE_PING_AFTER`]. A ping on
/// every acquire is a round trip (and a PostgreSQL wakeup) per query under load, when
/// connections are never idle; a connection that a database restart broke has usually been.
fn ping_if_idle(
    conn: &mut PgConnection,
    meta: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if meta.idle_for >= IDLE_PING_AFTER {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// A pool of `connections` hot-path connections, all opened now, each preparing `statements`
/// as it opens: the first calls of a run do not stall on either (the first submits on a fresh
/// server took 7-18 ms, each new connection preparing the insert).
async fn warm_pool(
    options: PgConnectOptions,
    connections: u32,
    statements: &'static [&'static str],
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(ping_if_idle)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                for sql in statements {
                    conn.prepare(sql.into_sql_str()).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
}

/// Tasks in PostgreSQL.
#[derive(Clone)]
pub struct PgTaskStore {
    /// Shared connection pool; sized by `DATABASE_MAX_CONNECTIONS`.
    pub(super) pool: PgPool,
    /// The same pool: PostgreSQL runs concurrent writers itself.
    pub(super) writer: PgPool,
    /// Connections that commit without waiting for the WAL flush, for claims and outcomes:
    /// they hold a user's event counter row only while they run. An outcome, which must be
    /// durable before anyone hears of it, waits for [`Self::flush`] after.
    pub(super) fast: PgPool,
    /// Connections for submits, which commit synchronously: one round trip where a commit
    /// and a barrier take two (see `postgres_fast.rs`).
    pub(super) submits: PgPool,
    /// Waits for the WAL flush after a commit on [`Self::fast`].
    pub(super) flush: WalFlush,
    /// Receives each transaction's events after it commits.
    pub(super) publisher: AfterCommit,
}

impl PgTaskStore {
    /// Connects and runs the PostgreSQL migrations (under sqlx's advisory lock, so instances
    /// starting together do not race).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .before_acquire(ping_if_idle)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let fast = warm_pool(
            options.clone().options([("synchronous_commit", "off")]),
            FAST_CONNECTIONS.min(max_connections.max(1)),
            &*super::postgres_fast::FAST_STATEMENTS,
        )
        .await?;
        let submits = warm_pool(
            options,
            SUBMIT_CONNECTIONS.min(max_connections.max(1)),
            &super::postgres_fast::SUBMIT_STATEMENTS,
        )
        .await?;
        // Instances pick their barrier row at random: two rarely share one.
        let slot = rand::random_range(0..FLUSH_SLOTS);
        Ok(Self {
            writer: pool.clone(),
            flush: WalFlush::spawn(pool.clone(), slot),
            pool,
            fast,
            submits,
            publisher: AfterCommit::default(),
        })
    }

    /// Hands every committed event to `publisher`.
    pub fn with_publisher(mut self, publisher: std::sync::Arc<dyn EventPublisher>) -> Self {
        self.publisher = AfterCommit::from(publisher);
        self
    }

    /// The pool, for health checks and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl SqlStore for PgTaskStore {
    type Db = sqlx::Postgres;

    fn sql(&self) -> Sql<'_, sqlx::Postgres> {
        Sql {
            reads: &self.pool,
            writes: &self.writer,
            after_commit: &self.publisher,
        }
    }

    async fn hot_insert_tasks(
        &self,
        tasks: Vec<crate::domain::Task>,
    ) -> Result<Vec<super::Inserted>, StoreError> {
        self.insert_tasks_impl(tasks).await
    }

    async fn hot_claim(
        &self,
        ids: &[crate::domain::TaskId],
        worker: &crate::domain::WorkerId,
        lease_until: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::domain::Task>, StoreError> {
        self.claim_impl(ids, worker, lease_until, now).await
    }

    async fn hot_finish(&self, finishes: &[super::Finish]) -> Result<Vec<bool>, StoreError> {
        self.finish_impl(finishes).await
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
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
        conn: &mut sqlx::PgConnection,
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
        conn: &mut sqlx::PgConnection,
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
