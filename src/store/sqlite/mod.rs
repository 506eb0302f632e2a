//! SQLite task store (embedded mode): one file, one process.
//!
//! `writer.rs` is its hot path (one loop commits the submits, claims and outcomes of many
//! callers in one transaction, a submit of new tasks in one trip); `checkpoint.rs` keeps WAL
//! checkpoints off that path; `dialect.rs` is what the shared SQL of `store/sql/` does the
//! SQLite way.

mod checkpoint;
mod dialect;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use self::writer::{Write, WriteQueue, Written};
use crate::domain::{Task, TaskId, WorkerId};
use crate::store::sql::{Sql, SqlStore};
use crate::store::{AfterCommit, EventPublisher, Finish, Inserted, StoreError};

pub(crate) use self::checkpoint::restart_wal_if_full;
pub use self::checkpoint::{CheckpointPass, Checkpointer};

/// Tasks in a SQLite file.
#[derive(Clone)]
pub struct SqliteTaskStore {
    /// Readers: WAL lets them run alongside the writer.
    pool: SqlitePool,
    /// The one writer connection. SQLite allows one write transaction at a time; queueing
    /// writers here, in order, avoids `SQLITE_BUSY` and the busy handler's sleeps.
    writer: SqlitePool,
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

    /// The flag the checkpointer raises when the WAL should start over: a writer that sees
    /// it checkpoints before its transaction ([`restart_wal_if_full`]).
    pub(crate) fn wal_full(&self) -> Arc<AtomicBool> {
        self.wal_full.clone()
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

    // Submits, claims and outcomes go through the write loop, which commits those of many
    // callers in one transaction.
    async fn hot_insert_tasks(&self, tasks: Vec<Task>) -> Result<Vec<Inserted>, StoreError> {
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

    async fn hot_claim(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError> {
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

    async fn hot_finish(&self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
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
