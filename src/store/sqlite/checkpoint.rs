//! WAL checkpoints of the SQLite store, off the write path.
//!
//! SQLite's automatic checkpoint runs inside the commit that pushes the WAL past 1,000 pages:
//! that commit copies pages into the database file and waits for two fsyncs while the one
//! writer connection, and every submit queued behind it, waits too (the worst 1 % of writes
//! took 4-7 ms that way, against 0.3 ms for the rest). The writer therefore runs with
//! `wal_autocheckpoint = 0` and this loop checkpoints from its own connection instead:
//! `PASSIVE` checkpoints run beside the writer and never block it.
//!
//! A passive checkpoint copies the WAL into the database but does not make the writer start
//! the WAL over: SQLite does that only when a write transaction begins while the WAL is wholly
//! copied, which a writer that commits every millisecond, beside checkpoints that each end a
//! little behind it, may never find (the WAL then grows without end). So once the WAL passes
//! [`WAL_RESTART_BYTES`], a pass asks the write loop to checkpoint once itself between two of
//! its transactions (see `writer.rs`): nothing commits meanwhile, so that checkpoint
//! copies the few frames left and the next transaction starts the WAL from its beginning. (A
//! `RESTART` checkpoint from here would do the same but make the writer wait in SQLite's busy
//! handler, which sleeps in steps of up to 100 ms: embedded submit p95 went from 6 to 14 ms.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::store::StoreError;

/// WAL size (16 MiB) past which the writer is asked to let the WAL start over. At 1,000 tasks/s
/// the WAL grows ~27 pages a task (every small transaction writes whole pages of the tasks,
/// their indexes and the events): 26 MB/s with the store's 1 KiB pages, a restart every
/// 0.6 s. The write loop's checkpoint, which syncs the WAL and the database file, then holds
/// writes 7-10 ms (measured under that load); with a 64 MiB limit it restarted a quarter as
/// often but held writes 15-17 ms each time, and submit p99 was no better. A WAL that keeps growing
/// costs more than it saves: every frame written past the old end makes the kernel allocate
/// and zero a new page-cache page (`ext4_da_write_begin`: 10 % of the box's CPU at 1,000
/// tasks/s with 4 KiB pages), while a restarted WAL overwrites pages already cached.
const WAL_RESTART_BYTES: i64 = 16 << 20;

/// What one checkpoint pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPass {
    /// Frames in the WAL.
    pub wal_frames: i64,
    /// Frames copied into the database file (all of them, unless a reader still needed some).
    pub checkpointed: i64,
}

/// Checkpoints the WAL of one SQLite store every `interval`.
pub struct Checkpointer {
    /// A read-write connection of its own (the store's readers are read-only).
    pool: SqlitePool,
    interval: Duration,
    /// WAL pages past which the writer is asked to let the WAL start over.
    restart_pages: i64,
    /// Set to ask the write loop for a checkpoint between two transactions.
    wal_full: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Checkpoints through `pool`, whose database has pages of `page_size` bytes; raises
    /// `wal_full` for the write loop when the WAL is large.
    pub(super) fn new(
        pool: SqlitePool,
        page_size: u32,
        interval: Duration,
        wal_full: Arc<AtomicBool>,
    ) -> Self {
        Self {
            pool,
            interval,
            restart_pages: WAL_RESTART_BYTES / i64::from(page_size.max(512)),
            wal_full,
        }
    }

    /// One `PASSIVE` checkpoint: copies what no reader still needs, waits for no one.
    pub async fn checkpoint(&self) -> Result<CheckpointPass, StoreError> {
        run_passive(&self.pool).await
    }

    /// Checkpoints until `shutdown`, then once more so a clean stop leaves little WAL behind.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => break,
            }
            self.pass().await;
        }
        self.pass().await;
        self.pool.close().await;
    }

    async fn pass(&self) {
        match self.checkpoint().await {
            Ok(p) if p.wal_frames > self.restart_pages => {
                // A second pass right away copies what was committed during the first, so
                // the writer's own checkpoint finds little left to copy.
                let again = self.checkpoint().await;
                let held = again.is_ok_and(|a| a.checkpointed < a.wal_frames);
                // Still set from the last pass and frames left behind: a reader holds the WAL.
                // (Still set with everything copied only means no write came since: an idle
                // writer needs no restart.)
                if self.wal_full.swap(true, Ordering::Relaxed) && held {
                    tracing::warn!(
                        wal_frames = p.wal_frames,
                        checkpointed = p.checkpointed,
                        "SQLite WAL is not starting over: a long-running reader may hold it"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed"),
        }
    }
}

/// Between two write transactions on `writer`: if a pass raised `wal_full`, checkpoints once
/// on the writer itself, so that the next transaction starts the WAL over (see the module's
/// doc). Every writer calls it before its transaction: the write loop, and the event store's
/// appends.
pub(crate) async fn restart_wal_if_full(writer: &SqlitePool, wal_full: &AtomicBool) {
    if !wal_full.swap(false, Ordering::Relaxed) {
        return;
    }
    // Nothing commits during this checkpoint (the pool has one connection), so it can copy
    // the whole WAL and the transaction after it starts it over.
    let started = std::time::Instant::now();
    match run_passive(writer).await {
        Ok(pass) => tracing::debug!(
            wal_frames = pass.wal_frames,
            checkpointed = pass.checkpointed,
            elapsed_us = started.elapsed().as_micros() as u64,
            "checkpoint on the writer"
        ),
        Err(e) => tracing::warn!(error = %e, "SQLite checkpoint before a write failed"),
    }
}

/// One `PASSIVE` checkpoint through `conn` (a pool or a connection).
pub(super) async fn run_passive<'c, E>(conn: E) -> Result<CheckpointPass, StoreError>
where
    E: sqlx::SqliteExecutor<'c>,
{
    let (_busy, wal_frames, checkpointed): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(conn)
            .await?;
    Ok(CheckpointPass {
        wal_frames,
        checkpointed,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::Checkpointer;
    use crate::domain::{Task, UserId};
    use crate::store::{SqliteTaskStore, TaskStore};

    fn wal_bytes(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join("tasks.db-wal")).map_or(0, |m| m.len())
    }

    #[tokio::test]
    async fn writes_leave_checkpoints_to_the_loop_and_a_pass_copies_the_whole_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteTaskStore::open(dir.path()).await.unwrap();
        // Far past the 1,000 pages at which SQLite would checkpoint inside a commit.
        for _ in 0..300 {
            store
                .insert_tasks((0..20).map(|_| Task::echo_for_test("u1")).collect())
                .await
                .unwrap();
        }
        let checkpointer = store.checkpointer(Duration::from_millis(10));
        let pass = checkpointer.checkpoint().await.unwrap();
        assert!(
            pass.wal_frames > 1_000,
            "the writer checkpointed by itself: {pass:?}"
        );
        assert_eq!(pass.checkpointed, pass.wal_frames, "{pass:?}");

        // Under the loop, which restarts the WAL once it is larger than the limit, the WAL is
        // reused and stops growing. (A test-sized limit: the WAL above is ~10,000 pages.)
        let shutdown = CancellationToken::new();
        let checkpointer = Checkpointer {
            restart_pages: 2_000,
            ..checkpointer
        };
        let running = tokio::spawn(checkpointer.run(shutdown.clone()));
        let before = wal_bytes(dir.path());
        for _ in 0..300 {
            store
                .insert_tasks((0..20).map(|_| Task::echo_for_test("u1")).collect())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            wal_bytes(dir.path()) <= before,
            "WAL grew from {before} to {} bytes",
            wal_bytes(dir.path())
        );
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the loop stops on shutdown")
            .unwrap();
        let user = UserId::parse("u1").unwrap();
        assert_eq!(store.count_active_by_user(&user).await.unwrap(), 12_000);
    }

    /// The event store's appends write on the same connection outside the write loop; they
    /// answer a full WAL the same way, so appends back to back do not grow it without end.
    #[tokio::test]
    async fn event_appends_let_a_full_wal_start_over_too() {
        use crate::domain::eventstore::{
            EventEnvelope, EventMetadata, EventType, ExpectedVersion, SnapshotPolicy, StreamId,
        };
        use crate::store::eventstore::EventStore;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteTaskStore::open(dir.path()).await.unwrap();
        let events = store.event_store(SnapshotPolicy::default());
        let stream = StreamId::parse("s-1").unwrap();
        let kind = EventType::parse("Happened").unwrap();
        // A test-sized limit (2 MiB of 1 KiB pages); appends never pause for a checkpoint
        // to catch up.
        let checkpointer = Checkpointer {
            restart_pages: 2_000,
            ..store.checkpointer(Duration::from_millis(10))
        };
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(checkpointer.run(shutdown.clone()));
        for n in 0..1_000 {
            // A pause now and then, as between bursts of real appends, so that how many
            // restarts happen does not hang on the scheduler of a loaded machine giving the
            // checkpointer a turn.
            if n % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            let batch = (0..50)
                .map(|i| {
                    let meta = EventMetadata::at(chrono::Utc::now());
                    EventEnvelope::new(kind.clone(), serde_json::json!({ "i": i }), meta)
                })
                .collect();
            let appended = events.append_events(&stream, batch, ExpectedVersion::Any);
            appended.await.unwrap();
        }
        // ~30 MiB written in all; without restarts the WAL holds all of it (33 MB measured).
        // Restarts keep it a few MiB (7.6 MB seen on a saturated machine; 22 MB once before the
        // pauses above, when the checkpointer hardly ran), so the bound is well under 33.
        let wal = wal_bytes(dir.path());
        assert!(wal < 16 << 20, "WAL of {wal} bytes");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the loop stops on shutdown")
            .unwrap();
        assert_eq!(events.last_position().await.unwrap(), 50_000);
    }
}
