//! SQLite task store (embedded mode): one file, one process.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::EventPublisher;
use super::sql::{
    CompleteRow, Dialect, IN_CHUNK, INSERT_CHUNK, Lead, NewEvent, RowsAffected, Sql, SqlStore,
};
use super::sqlite_checkpoint::Checkpointer;
use super::sqlite_writer::{Write, WriteQueue, Written};
use super::{AfterCommit, StoreError};
use crate::domain::StoredEvent;

/// Tasks in a SQLite file.
#[derive(Clone)]
pub struct SqliteTaskStore {
    /// Readers: WAL lets them run alongside the writer.
    pub(super) pool: SqlitePool,
    /// The one writer connection. SQLite allows one write transaction at a time; queueing
    /// writers here, in order, avoids `SQLITE_BUSY` and the busy handler's sleeps.
    pub(super) writer: SqlitePool,
    /// The checkpointer's connection.
    checkpoints: SqlitePool,
    /// The database's page size in bytes (WAL frames are pages).
    page_size: u32,
    /// The loop that commits submits, claims and outcomes together, started by the first of
    /// them (so that it publishes to the publisher set by then).
    writes: Arc<OnceLock<WriteQueue>>,
    /// Receives each transaction's events after it commits.
    publisher: AfterCommit,
    /// Raised by the checkpointer when the WAL should start over; the write loop answers it.
    wal_full: Arc<AtomicBool>,
}

/// A pool of `max` (at least `min` open) connections to the database file. They live in this
/// process and do not drop, so none is pinged before use: sqlx's ping is a round trip to the
/// connection's thread, two thread switches before every read or transaction (a `GetTask`
/// took four instead of two).
fn in_process_pool(max: u32, min: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        .min_connections(min)
        .test_before_acquire(false)
}

impl SqliteTaskStore {
    /// Opens (creating if needed) `tasks.db` in `dir` and runs the SQLite migrations.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(sqlx::Error::Configuration(
                format!("cannot create DATA_DIR {}: {e}", dir.display()).into(),
            ))
        })?;
        let url = format!("sqlite://{}", dir.join("tasks.db").display());
        Self::connect(&url).await
    }

    /// Connects to a SQLite URL (`sqlite://path` or `sqlite::memory:`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a crash of this process; only an OS crash or
            // power loss can lose the last few commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Small pages for a new file (an existing one keeps its own): a task's small
            // writes dirty ~27 pages of the tasks, their indexes and the events, and the WAL
            // takes each whole, so 1 KiB pages write a quarter of the bytes that 4 KiB pages
            // do (measured at 1,000 tasks/s: the WAL started over half as often).
            .page_size(1024);
        let writer = in_process_pool(1, 1)
            .acquire_timeout(Duration::from_secs(30))
            // Checkpoints run on their own connection (see `Checkpointer`), not inside commits.
            // SQLite's default page cache (2 MB). A larger one costs more than it saves: a
            // B-tree split renumbers pages through the reserved lock page (page 1,048,577 at
            // 1 KiB), which leaves the cache's highest page number far past the end of the
            // file, so that transaction's commit scans the cache's whole hash table, whose
            // size follows the cache's. With 16 MB that scan was 20 % of this connection's
            // thread at 1,000 AI tasks/s (perf), and server CPU 4-5 % higher than now.
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&writer)
            .await?;
        let pool = in_process_pool(4, 1)
            .connect_with(options.clone().read_only(true))
            .await?;
        let checkpoints = in_process_pool(1, 0).connect_lazy_with(options);
        Ok(Self {
            pool,
            writer,
            checkpoints,
            page_size: u32::try_from(page_size).unwrap_or(4096),
            writes: Arc::default(),
            publisher: AfterCommit::default(),
            wal_full: Arc::default(),
        })
    }

    /// The loop that checkpoints this store's WAL every `interval`; its writer leaves that to
    /// it. Run it wherever the store lives longer than a moment.
    pub fn checkpointer(&self, interval: Duration) -> Checkpointer {
        Checkpointer::new(
            self.checkpoints.clone(),
            self.page_size,
            interval,
            self.wal_full.clone(),
        )
    }

    /// Hands every committed event to `publisher`.
    pub fn with_publisher(mut self, publisher: Arc<dyn EventPublisher>) -> Self {
        self.publisher = AfterCommit::from(publisher);
        self.writes = Arc::default();
        self
    }

    /// Queues `write` for the write loop and waits for its transaction.
    async fn write(&self, write: Write) -> Result<Written, StoreError> {
        self.writes
            .get_or_init(|| {
                WriteQueue::spawn(
                    self.writer.clone(),
                    self.publisher.clone(),
                    self.wal_full.clone(),
                )
            })
            .write(write)
            .await
    }
}

impl SqlStore for SqliteTaskStore {
    type Db = sqlx::Sqlite;

    fn sql(&self) -> Sql<'_, sqlx::Sqlite> {
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

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Dialect for sqlx::Sqlite {
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
        conn: &mut sqlx::SqliteConnection,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        SqliteTaskStore::insert_events_then(conn, events, &mut Lead::none(), "").await
    }

    /// Completes many tasks in one `UPDATE ... FROM (VALUES ...)`; returns the (id, user) of
    /// each row that applied.
    async fn complete_rows(
        conn: &mut sqlx::SqliteConnection,
        rows: Vec<CompleteRow>,
        lead: &mut Lead,
    ) -> Result<Vec<(uuid::Uuid, String)>, StoreError> {
        let mut applied = Vec::with_capacity(rows.len());
        // 5 binds a row: well under SQLite's 32,766-variable limit.
        for chunk in rows.chunks(IN_CHUNK) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(lead.take());
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

impl SqliteTaskStore {
    /// [`insert_events`](Self::insert_events) after what `lead` still has to open, then the
    /// statement `tail` (e.g. `COMMIT`), all in one trip to the connection's thread (see
    /// [`Self::events_after`]).
    pub(super) async fn insert_events_then(
        conn: &mut sqlx::SqliteConnection,
        events: Vec<NewEvent>,
        lead: &mut Lead,
        tail: &'static str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(lead.take());
        Self::events_after(conn, qb, events, tail).await
    }

    /// Submits new tasks, none with an idempotency key, in one trip to the connection's
    /// thread: `BEGIN`, their rows, their events and `COMMIT` (the general path takes two: the
    /// rows' ids must come back before the events can be written). The rows have no conflict
    /// clause: an id stored already (a retry of a commit whose answer was lost) fails the
    /// statement, and the caller rolls back and takes the general path. Cuts the tasks'
    /// timestamps to microseconds, as stored.
    pub(super) async fn insert_new_tasks_and_commit(
        conn: &mut sqlx::SqliteConnection,
        submits: &mut [Vec<crate::domain::Task>],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        submits
            .iter_mut()
            .flatten()
            .for_each(super::sql::cut_to_micros);
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("BEGIN IMMEDIATE; ");
        for chunk in submits.iter().flat_map(|t| t.chunks(INSERT_CHUNK)) {
            super::sql::push_tasks_insert(&mut qb, chunk);
            qb.push("; ");
        }
        let events = NewEvent::for_new_tasks(submits.iter().flatten());
        Self::events_after(conn, qb, events, "COMMIT").await
    }

    /// Runs the statements already in `qb`, then inserts `events` and runs `tail`, all in one
    /// trip: the counters are bumped first and each event's id is read
    /// from its counter in SQL (`last_id` minus the events of its user after it), so nothing
    /// waits for the counters to come back. The statements before must return no rows.
    async fn events_after(
        conn: &mut sqlx::SqliteConnection,
        mut qb: sqlx::QueryBuilder<sqlx::Sqlite>,
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
}

impl SqliteTaskStore {
    async fn insert_tasks_impl(
        &self,
        tasks: Vec<crate::domain::Task>,
    ) -> Result<Vec<super::Inserted>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        match self.write(Write::Insert(tasks)).await? {
            Written::Inserted(inserted) => Ok(inserted),
            _ => Err(StoreError::Corrupt(
                "write loop answered the wrong write".into(),
            )),
        }
    }

    async fn claim_impl(
        &self,
        ids: &[crate::domain::TaskId],
        worker: &crate::domain::WorkerId,
        lease_until: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::domain::Task>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let claim = Write::Claim {
            ids: ids.to_vec(),
            worker: worker.clone(),
            lease_until,
            now,
        };
        match self.write(claim).await? {
            Written::Claimed(tasks) => Ok(tasks),
            _ => Err(StoreError::Corrupt(
                "write loop answered the wrong write".into(),
            )),
        }
    }

    async fn finish_impl(&self, finishes: &[super::Finish]) -> Result<Vec<bool>, StoreError> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        match self.write(Write::Finish(finishes.to_vec())).await? {
            Written::Finished(applied) => Ok(applied),
            _ => Err(StoreError::Corrupt(
                "write loop answered the wrong write".into(),
            )),
        }
    }
}
