//! The SQL both databases share, written once as functions generic over the database.
//!
//! PostgreSQL and SQLite (3.35+) share every statement used here: `RETURNING`, `ON CONFLICT`,
//! multi-row `VALUES` and `IN (...)` lists. Placeholders differ (`$1` / `?`), and
//! [`sqlx::QueryBuilder`] writes the right one, so one function serves both stores (and a
//! MySQL store later). What differs per database is a [`Dialect`]: how events are numbered and
//! inserted, how many completions are written in one statement, and a few constants. What
//! differs per store is a [`SqlStore`]: its connections, its after-commit hook and its hot
//! paths (submit, claim, finish), which each store runs its own way.
//!
//! One file per concern. The task store's: `tasks.rs` (insert, cancel), `queries.rs` (find,
//! list, counts), `claims.rs` (claims, leases, workers), `outcomes.rs` (outcomes and
//! progress), `dead_letters.rs`, and `task_store.rs`, which implements
//! [`TaskStore`](super::TaskStore) for every [`SqlStore`] from them; `testing.rs` implements
//! [`TaskStoreTesting`](super::TaskStoreTesting). The other ports, one file each:
//! `notifications.rs`, `queues.rs`, `usage.rs`. A new aggregate (chat, the event store,
//! pipelines) adds its port beside them the same way, and a new database (MySQL) adds a
//! [`Dialect`] and a [`SqlStore`]: every port then comes with them.
//!
//! Why generic functions carry long `where` clauses: sqlx states what a database can bind,
//! read and execute as bounds on other types (`Uuid: Encode<'q, DB>`, `&mut DB::Connection:
//! Executor`), and Rust does not carry such bounds from a trait to its users
//! (rust-lang/rust#20671), so they cannot be named once as a trait alias. Each generic `impl`
//! block therefore repeats the same block of bounds ([`Bind`] and [`Column`] keep each to one
//! line; copy the block when adding a file). The price is those lines; in return the SQL is
//! ordinary code, type-checked once for every database and split by concern, where one
//! `macro_rules!` per port held every method until it was expanded for each store.

mod claims;
mod dead_letters;
mod notifications;
mod outcomes;
mod queries;
mod queues;
mod task_store;
mod tasks;
mod testing;
mod usage;
mod workers;

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{Database, Decode, Encode, IntoArguments, Pool, QueryBuilder, Type};
use uuid::Uuid;

use super::{AfterCommit, Finish, Inserted, StoreError};
use crate::domain::{StoredEvent, Task, TaskId, UserId, WorkerId};

pub use crate::domain::NewEvent;
pub(crate) use claims::claim_in_tx;
pub(crate) use outcomes::finish_in_tx;
pub(crate) use tasks::{insert_tasks_in_tx, push_tasks_insert};

/// A Rust value that database `DB` can bind as a parameter.
pub(crate) trait Bind<DB: Database>: for<'q> Encode<'q, DB> + Type<DB> {}
impl<DB: Database, T> Bind<DB> for T where T: for<'q> Encode<'q, DB> + Type<DB> {}

/// A Rust value that database `DB` can bind as a parameter and read back from a column.
pub(crate) trait Column<DB: Database>: Bind<DB> + for<'r> Decode<'r, DB> {}
impl<DB: Database, T> Column<DB> for T where T: Bind<DB> + for<'r> Decode<'r, DB> {}

/// How many rows a statement changed: each driver's result has `rows_affected`, but sqlx
/// names no trait for it.
pub(crate) trait RowsAffected {
    /// Rows inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

/// What differs between databases in the shared SQL.
pub(crate) trait Dialect:
    Database<Arguments: IntoArguments<Self>, QueryResult: RowsAffected>
{
    /// The class of a task's last error, read from its JSON `error` column.
    const ERROR_CLASS: &'static str;

    /// The statement that lets the rest of a transaction commit without waiting for its WAL
    /// flush, for writes a database crash may lose harmlessly (progress, attempts); `None`
    /// where there is nothing to gain.
    const RELAXED_COMMIT: Option<&'static str>;

    /// Whether `FOR UPDATE SKIP LOCKED` exists, so progress never waits for a task another
    /// transaction holds.
    const SKIP_LOCKED: bool;

    /// Inserts events, numbering each user's from their counter row in the same
    /// transaction. Returns them with their ids.
    fn insert_events(
        conn: &mut Self::Connection,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Completes many tasks (after what `lead` still has to open); returns the (id, user) of
    /// each row that applied.
    fn complete_rows(
        conn: &mut Self::Connection,
        rows: Vec<CompleteRow>,
        lead: &mut Lead,
    ) -> impl Future<Output = Result<Vec<(Uuid, String)>, StoreError>> + Send;
}

/// A store whose ports the shared SQL implements: its connections, and its hot paths.
pub(crate) trait SqlStore: Send + Sync + 'static {
    /// Its database.
    type Db: Dialect;

    /// The shared SQL on this store's connections.
    fn sql(&self) -> Sql<'_, Self::Db>;

    /// [`TaskStore::insert_tasks`](super::TaskStore::insert_tasks), the store's own way.
    fn hot_insert_tasks(
        &self,
        tasks: Vec<Task>,
    ) -> impl Future<Output = Result<Vec<Inserted>, StoreError>> + Send;

    /// [`TaskStore::claim`](super::TaskStore::claim), the store's own way.
    fn hot_claim(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Task>, StoreError>> + Send;

    /// [`TaskStore::finish`](super::TaskStore::finish), the store's own way.
    fn hot_finish(
        &self,
        finishes: &[Finish],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;
}

/// The shared SQL, run on one store's connections.
pub(crate) struct Sql<'a, DB: Database> {
    /// For reads.
    pub(crate) reads: &'a Pool<DB>,
    /// For transactions that write (SQLite's single writer connection).
    pub(crate) writes: &'a Pool<DB>,
    /// Hears of each transaction's events once it has committed.
    pub(crate) after_commit: &'a AfterCommit,
}

/// A user id read back from the database.
pub fn stored_user(user: &str, what: impl FnOnce() -> String) -> Result<UserId, StoreError> {
    UserId::parse(user).map_err(|_| StoreError::Corrupt(what()))
}

/// Appends `id1, id2, ...` as bound parameters, for an `IN (...)` list.
pub(crate) fn push_ids<DB: Database>(qb: &mut QueryBuilder<DB>, ids: &[TaskId])
where
    Uuid: Bind<DB>,
{
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(id.as_uuid());
    }
}

/// `SELECT <every task column> FROM tasks WHERE 1 = 1`, for conditions to follow.
pub(crate) fn select_tasks<DB: Database>() -> QueryBuilder<DB> {
    QueryBuilder::new(format!(
        "SELECT {} FROM tasks WHERE 1 = 1",
        super::row::TASK_COLUMNS
    ))
}

/// Rows per multi-row INSERT: 26 binds a row stays under SQLite's 32,766-variable limit.
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
    /// The task.
    pub id: Uuid,
    /// The worker that must still hold it.
    pub worker_id: String,
    /// The provider's answer.
    pub result: serde_json::Value,
    /// Who produced it.
    pub provider: Option<String>,
    /// When it completed.
    pub at: DateTime<Utc>,
}
