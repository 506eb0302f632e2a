//! The projections' storage: checkpoints and leases ([`ProjectionStore`]) and the read models
//! they keep, UserProgress, DailyStats and task statistics ([`ProgressReads`]), in the same
//! database as the event store, for PostgreSQL and SQLite alike.
//!
//! A batch of events is applied in one transaction ([`ProjectionStore::apply`]): the
//! checkpoint moves from the position the batch starts at to its last event's (a
//! compare-and-set, so a batch applied twice commits once), the read-model rows the batch
//! touches are loaded, folded by the pure code of [`crate::domain::progress`] and written
//! back. Delivery is at least once; the checkpoint makes each batch's effect exactly once.
//!
//! Every read-model row carries a generation: readers read the active one, a rebuild fills
//! the next beside it (see `migrations/*/…_projections.sql`).
//!
//! Files: `sql.rs` is [`SqlProjectionStore`] and its checkpoint, lease and rebuild SQL;
//! `apply.rs` the batch transaction; `learning.rs` and `task_stats.rs` each read model's rows;
//! `reads.rs` what readers ask; `finished.rs` the figures the task feed reads of finished tasks.

mod apply;
mod finished;
mod learning;
mod reads;
mod sql;
mod task_stats;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::progress::{
    DailyCounts, LearningEvent, TaskStatsFold, TaskStatsKey, TaskStatsRow, UserState,
};
use crate::domain::projection::{Parked, ProjectionName, ProjectionStatus};
use crate::domain::{TaskId, UserId};

use super::StoreError;

pub use finished::FinishedTaskFacts;
pub use sql::{PgProjectionStore, SqlProjectionStore, SqliteProjectionStore};

/// What one batch changes in a projection's read model.
#[derive(Debug)]
pub enum BatchWork {
    /// Learning events, each with its user and time, in position order.
    Progress(Vec<(UserId, LearningEvent, DateTime<Utc>)>),
    /// Task outcomes, folded into increments.
    TaskStats(TaskStatsFold),
}

/// One batch: the checkpoint moves from `from` to `to`, in the same transaction as `work`.
#[derive(Debug)]
pub struct Batch {
    /// Whose.
    pub name: ProjectionName,
    /// Which generation (the active one, or a rebuild's).
    pub generation: u64,
    /// The checkpoint as the batch was read after it; the batch commits only from there.
    pub from: u64,
    /// The position of the batch's last event (events it skips count as folded too).
    pub to: u64,
    /// What it changes.
    pub work: BatchWork,
}

/// Why a batch did not commit.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The checkpoint was not at `from`: another runner moved it (the lease changed hands),
    /// or the generation was dropped. Nothing was written; read the checkpoint again.
    #[error("checkpoint of {0} moved under this runner")]
    Moved(ProjectionName),
    /// The database failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Checkpoints, leases, rebuilds and batches of the projections (what the manager needs).
#[async_trait]
pub trait ProjectionStore: Send + Sync + 'static {
    /// Where every projection stands.
    async fn statuses(&self) -> Result<Vec<ProjectionStatus>, StoreError>;

    /// Where `name` stands.
    async fn status(&self, name: ProjectionName) -> Result<ProjectionStatus, StoreError>;

    /// The checkpoint of `name`'s `generation` (`None`: no such generation).
    async fn checkpoint(
        &self,
        name: ProjectionName,
        generation: u64,
    ) -> Result<Option<u64>, StoreError>;

    /// Takes or renews the lease on `name` for `owner` until `until`, and records a heartbeat
    /// at `now`: only when the lease is free, expired or `owner`'s already. Whether `owner`
    /// holds it now.
    async fn acquire_lease(
        &self,
        name: ProjectionName,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Gives the lease up, if `owner` holds it (a clean shutdown: another instance takes
    /// over at once instead of after the lease runs out).
    async fn release_lease(&self, name: ProjectionName, owner: &str) -> Result<(), StoreError>;

    /// Applies one batch: checkpoint and read model in one transaction.
    async fn apply(&self, batch: Batch) -> Result<(), ApplyError>;

    /// Parks `name` on the event at `parked.position`.
    async fn park(&self, name: ProjectionName, parked: Parked) -> Result<(), StoreError>;

    /// Clears a park: the runner tries the event again.
    async fn unpark(&self, name: ProjectionName) -> Result<(), StoreError>;

    /// Starts a rebuild: a new generation at position 0 (an earlier unfinished rebuild's rows
    /// are dropped) and clears a park. Returns the new generation.
    async fn start_rebuild(
        &self,
        name: ProjectionName,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Makes the rebuild's `generation` the active one, if it is still `name`'s rebuild.
    /// Returns the generation it replaced (whose rows are to be dropped), if it swapped.
    async fn swap(&self, name: ProjectionName, generation: u64) -> Result<Option<u64>, StoreError>;

    /// Deletes the rows and checkpoint of a generation no longer active nor rebuilding.
    async fn drop_generation(
        &self,
        name: ProjectionName,
        generation: u64,
    ) -> Result<(), StoreError>;

    /// Type, attempts, tokens and cost of those of `ids` that exist (for the task feed).
    async fn finished_tasks(&self, ids: &[TaskId]) -> Result<Vec<FinishedTaskFacts>, StoreError>;
}

/// What readers ask of the read models: always the active generation.
#[async_trait]
pub trait ProgressReads: Send + Sync + 'static {
    /// A user's progress state, if anything is known of them.
    async fn user_progress(&self, user: &UserId) -> Result<Option<UserState>, StoreError>;

    /// A user's days from `from` to `to` (both included) that have any activity, in order.
    async fn daily_stats(
        &self,
        user: &UserId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, DailyCounts)>, StoreError>;

    /// A user's task statistics from `from` to `to` (UTC days, both included), in order.
    async fn task_stats(
        &self,
        user: &UserId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(TaskStatsKey, TaskStatsRow)>, StoreError>;
}
