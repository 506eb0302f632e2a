//! Commit now, wait for durability after: PostgreSQL's outcomes (and claims, which need not
//! wait) commit with `synchronous_commit = off` and then wait here for a flush of the WAL past
//! their commit.
//!
//! Why: every write of a user bumps that user's event counter row (gapless event ids), and a
//! synchronous commit holds the row lock until its WAL flush is on disk. One user's claims and
//! outcomes would then queue behind each other's fsyncs (`Lock:transactionid` in
//! `pg_stat_activity`). (Submits do commit synchronously: their loop has one batch in flight,
//! and a barrier would cost them a second round trip; see `one_trip.rs`.) An asynchronous
//! commit releases its locks at once; the caller, before it tells anyone, waits for a barrier:
//! a synchronous commit of a one-row update that starts after its commit returned. Flushing the
//! WAL up to the barrier's commit record flushes every record before it, so when the barrier
//! returns the caller's commit is as durable as a synchronous one. Barriers are shared: callers
//! that arrive while one runs all wait for the next, so one fsync serves every commit of that
//! moment.

use sqlx::PgPool;
use tokio_util::task::TaskTracker;

use crate::group_commit::{BatchError, Batcher};
use crate::store::StoreError;

/// Most callers one barrier answers (more wait for the next one).
const MAX_WAITERS: usize = 4096;

/// Waits for WAL flushes on behalf of many callers.
#[derive(Clone)]
pub(crate) struct WalFlush(Batcher<(), (), StoreError>);

impl WalFlush {
    /// Barriers on `pool` (which must commit synchronously), updating row `slot` of
    /// `wal_flush_marks`. The loop ends when every clone is dropped.
    pub(crate) fn spawn(pool: PgPool, slot: i32) -> Self {
        // The loop lives as long as the store, not the service: nothing waits on this tracker.
        let batcher = Batcher::spawn(
            &TaskTracker::new(),
            1,
            MAX_WAITERS,
            move |waiters: Vec<()>| {
                let pool = pool.clone();
                async move {
                    sqlx::query(
                        "INSERT INTO wal_flush_marks (slot, flushes) VALUES ($1, 1) \
                     ON CONFLICT (slot) DO UPDATE SET flushes = wal_flush_marks.flushes + 1",
                    )
                    .bind(slot)
                    .execute(&pool)
                    .await?;
                    Ok(vec![(); waiters.len()])
                }
            },
        );
        Self(batcher)
    }

    /// Returns once every commit that returned before this call is on disk.
    pub(crate) async fn wait(&self) -> Result<(), StoreError> {
        match self.0.call((), vec![()]).await {
            Ok(_) => Ok(()),
            Err(BatchError::Failed(e)) => Err(StoreError::Unavailable(sqlx::Error::Protocol(
                format!("WAL flush barrier failed: {e}"),
            ))),
            Err(BatchError::Closed) => Err(StoreError::Unavailable(sqlx::Error::PoolClosed)),
        }
    }
}
