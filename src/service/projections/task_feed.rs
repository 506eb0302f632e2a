//! The task feed: this service's own task outcomes into the event store, as `TaskFinished`
//! events, for the task-statistics projection.
//!
//! The task store hands every committed task event to its publisher; [`FeedingPublisher`]
//! passes them all on to the bus and copies the terminal ones (completed, failed, cancelled)
//! to [`TaskFeed`]. Each instance feeds the finishes it committed itself, so no lease is
//! needed and nothing is fed twice. The feed waits [`SETTLE`] after a batch's first finish
//! (provider calls' usage rows are written in the background within ~100 ms), reads the
//! tasks' type, attempts, tokens and cost in one query, and appends the batch to the day's
//! `tasks-<UTC day>` stream. Event ids derive from the finish (the owner's task event number),
//! so a retried append is not stored twice.
//!
//! What it does not promise: a finish still in memory when its instance dies (at most a few
//! seconds' worth), or dropped because the feed was [`CAPACITY`] behind, is not in the
//! statistics. The task itself, its events and its usage rows are unaffected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::StoreHead;
use crate::domain::eventstore::{EventEnvelope, EventError, ExpectedVersion};
use crate::domain::progress::{TaskFinished, TaskOutcome};
use crate::domain::{StoredEvent, TaskId, UserId};
use crate::store::EventPublisher;
use crate::store::eventstore::{EventStore, EventStoreError};
use crate::store::progress::{FinishedTaskFacts, ProjectionStore};
use crate::telemetry::metrics;

/// Finishes waiting to be fed, at most; more are dropped (and counted).
pub const CAPACITY: usize = 100_000;
/// How long after a batch's first finish it is fed: long enough for the usage rows.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Most finishes per append.
const BATCH: usize = 1000;
/// Pause before a failed batch is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Tries of one batch before it is given up (logged and counted).
const TRIES: u32 = 5;
/// How long a shutdown feeds the finishes that keep arriving, at most.
const DRAIN: Duration = Duration::from_secs(10);
/// A shutdown stops feeding once no finish has arrived for this long.
const DRAIN_IDLE: Duration = Duration::from_millis(500);

/// A task that reached a terminal status, as committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// The task.
    pub task_id: TaskId,
    /// Its owner.
    pub user_id: UserId,
    /// The owner's number of the terminal event (makes the event id).
    pub user_seq: u64,
    /// How it ended.
    pub outcome: TaskOutcome,
    /// When.
    pub at: DateTime<Utc>,
}

/// The store's publisher: everything to the bus, and the finishes to the feed as well.
pub struct FeedingPublisher {
    /// Where live events go.
    bus: Arc<dyn EventPublisher>,
    /// The feed's queue.
    feed: mpsc::Sender<Finish>,
}

impl FeedingPublisher {
    /// A publisher in front of `bus`, and the receiving end for [`TaskFeed`].
    pub fn new(bus: Arc<dyn EventPublisher>) -> (Self, mpsc::Receiver<Finish>) {
        let (feed, rx) = mpsc::channel(CAPACITY);
        (Self { bus, feed }, rx)
    }
}

impl EventPublisher for FeedingPublisher {
    fn publish(&self, events: Vec<StoredEvent>) {
        for e in &events {
            let Some(outcome) = TaskOutcome::of_event(e.event.kind) else {
                continue;
            };
            let finish = Finish {
                task_id: e.event.task_id,
                user_id: e.event.user_id.clone(),
                user_seq: e.id,
                outcome,
                at: e.event.created_at,
            };
            // Full: the feed is far behind; closed: shutting down. Either way never block the
            // commit path.
            if self.feed.try_send(finish).is_err() {
                metrics::task_feed_dropped(1);
            }
        }
        self.bus.publish(events);
    }
}

/// Appends the finishes it receives to the event store.
pub struct TaskFeed {
    /// Finishes from [`FeedingPublisher`].
    pub finishes: mpsc::Receiver<Finish>,
    /// Where they are appended.
    pub events: Arc<dyn EventStore>,
    /// Where their figures are read.
    pub store: Arc<dyn ProjectionStore>,
    /// Told of each append, so the projection wakes at once.
    pub head: StoreHead,
    /// How long a batch gathers after its first finish ([`SETTLE`] in the service).
    pub settle: Duration,
}

impl TaskFeed {
    /// Feeds until `cancel`, then what still arrives while the workers drain (up to
    /// [`DRAIN`]), and ends.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let open = tokio::select! {
                n = self.finishes.recv_many(&mut batch, BATCH) => n > 0,
                () = cancel.cancelled() => false,
            };
            if !open {
                break;
            }
            // Gather for `settle`; on shutdown stop gathering and feed what is here.
            let until = tokio::time::Instant::now() + self.settle;
            while batch.len() < BATCH {
                let room = BATCH - batch.len();
                tokio::select! {
                    n = self.finishes.recv_many(&mut batch, room) => if n == 0 { break },
                    () = tokio::time::sleep_until(until) => break,
                    () = cancel.cancelled() => break,
                }
            }
            self.feed(std::mem::take(&mut batch), &cancel).await;
        }
        // Shutdown: the workers may still be finishing their last tasks. Feed what arrives
        // until the queue is quiet for `DRAIN_IDLE` or `DRAIN` has passed, trying each batch
        // once.
        let deadline = tokio::time::Instant::now() + DRAIN;
        let once = CancellationToken::new();
        once.cancel();
        loop {
            let quiet = tokio::time::Instant::now() + DRAIN_IDLE;
            let got = tokio::time::timeout_at(
                quiet.min(deadline),
                self.finishes.recv_many(&mut batch, BATCH),
            )
            .await;
            if batch.is_empty() {
                break;
            }
            self.feed(std::mem::take(&mut batch), &once).await;
            if !matches!(got, Ok(n) if n > 0) || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        let left = self.finishes.len();
        if left > 0 {
            metrics::task_feed_dropped(left as u64);
            tracing::warn!(
                left,
                "task feed: shutdown drain timed out; finishes left unfed"
            );
        }
    }

    /// Appends one batch, trying again on failure ([`TRIES`] times, fewer once `cancel`led).
    async fn feed(&self, batch: Vec<Finish>, cancel: &CancellationToken) {
        let count = batch.len();
        for attempt in 1..=TRIES {
            match self.append(&batch).await {
                Ok(()) => return,
                Err(e) if attempt == TRIES || cancel.is_cancelled() => {
                    tracing::warn!(error = %e, count, "task feed: finishes not fed");
                    metrics::task_feed_dropped(count as u64);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "task feed: append failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        () = cancel.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Reads the batch's figures and appends it, one stream per UTC day.
    async fn append(&self, batch: &[Finish]) -> Result<(), FeedError> {
        let ids: Vec<TaskId> = batch.iter().map(|f| f.task_id).collect();
        let facts: BTreeMap<TaskId, FinishedTaskFacts> = self
            .store
            .finished_tasks(&ids)
            .await
            .map_err(|e| FeedError(e.to_string()))?
            .into_iter()
            .map(|f| (f.task_id, f))
            .collect();
        let mut days: BTreeMap<NaiveDate, Vec<EventEnvelope>> = BTreeMap::new();
        for f in batch {
            // A task deleted since (a purged dead letter) has nothing left to count.
            let Some(facts) = facts.get(&f.task_id) else {
                continue;
            };
            let finished = TaskFinished {
                task_id: f.task_id.to_string(),
                task_type: facts.task_type.clone(),
                outcome: f.outcome,
                attempts: facts.attempts,
                input_tokens: facts.input_tokens,
                output_tokens: facts.output_tokens,
                cost_micros: facts.cost_micros,
            };
            let id = TaskFinished::event_id(&f.user_id, f.user_seq);
            days.entry(f.at.date_naive())
                .or_default()
                .push(finished.envelope(id, &f.user_id, f.at));
        }
        for (day, events) in days {
            self.append_day(day, events).await?;
        }
        Ok(())
    }

    /// Appends `events` to `day`'s stream. A batch partly stored already (a retry after an
    /// answer was lost) is appended one event at a time: the stored ones answer as such.
    async fn append_day(
        &self,
        day: NaiveDate,
        events: Vec<EventEnvelope>,
    ) -> Result<(), FeedError> {
        let stream = TaskFinished::stream(day);
        let fed = self
            .events
            .append_events(&stream, events.clone(), ExpectedVersion::Any)
            .await;
        match fed {
            Ok(appended) => {
                self.head.advanced(appended.last_position());
                Ok(())
            }
            Err(EventStoreError::Rejected(EventError::EventIdsReused { .. })) => {
                for e in events {
                    let appended = self
                        .events
                        .append_events(&stream, vec![e], ExpectedVersion::Any)
                        .await
                        .map_err(|e| FeedError(e.to_string()))?;
                    self.head.advanced(appended.last_position());
                }
                Ok(())
            }
            Err(e) => Err(FeedError(e.to_string())),
        }
    }
}

/// Why a batch could not be fed (the store's words).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FeedError(String);

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::bus::MemoryBus;
    use crate::clock;
    use crate::domain::{NewTask, SubmitPolicy, Submitter, Task, TaskRequest};
    use crate::store::{SqliteTaskStore, TaskStore};

    fn echo(user: &str) -> Task {
        let new = NewTask::parse(
            &Submitter::user(UserId::parse(user).unwrap()),
            TaskRequest::new("echo", json!({})),
            &SubmitPolicy::default(),
        )
        .unwrap();
        Task::create(new, 3, Duration::from_secs(5), clock::now())
    }

    struct Setup {
        _dir: tempfile::TempDir,
        tasks: Arc<SqliteTaskStore>,
        feed: TaskFeed,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (publisher, finishes) = FeedingPublisher::new(Arc::new(MemoryBus::new()));
        let sqlite = SqliteTaskStore::open(dir.path())
            .await
            .unwrap()
            .with_publisher(Arc::new(publisher));
        let feed = TaskFeed {
            finishes,
            events: Arc::new(sqlite.event_store(Default::default())),
            store: Arc::new(sqlite.projection_store()),
            head: StoreHead::new(),
            settle: Duration::from_millis(50),
        };
        Setup {
            _dir: dir,
            tasks: Arc::new(sqlite),
            feed,
        }
    }

    async fn finished_events(events: &Arc<dyn EventStore>) -> Vec<TaskFinished> {
        events
            .read_all_events(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                TaskFinished::decode(e.event_type.as_str(), &e.event_data)
                    .unwrap()
                    .unwrap()
            })
            .collect()
    }

    /// A cancelled task committed just before shutdown is still fed: the drain feeds what is
    /// queued, and the loop ends soon after (no hang waiting for more).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn feeds_a_finish_and_drains_on_shutdown() {
        let s = setup().await;
        let task = echo("ana");
        s.tasks.insert_tasks(vec![task.clone()]).await.unwrap();
        let events = s.feed.events.clone();
        let cancel = CancellationToken::new();
        let running = tokio::spawn(s.feed.run(cancel.clone()));
        s.tasks.cancel(task.id, clock::now()).await.unwrap();
        cancel.cancel();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the feed ends after a shutdown")
            .unwrap();
        assert!(started.elapsed() < DRAIN, "{:?}", started.elapsed());
        let fed = finished_events(&events).await;
        assert_eq!(fed.len(), 1, "{fed:?}");
        assert_eq!(
            (
                fed[0].task_id.clone(),
                fed[0].outcome,
                fed[0].task_type.as_str()
            ),
            (task.id.to_string(), TaskOutcome::Cancelled, "echo")
        );
    }

    /// A batch fed again (an answer lost) and a batch holding one finish fed already both
    /// leave each finish stored once.
    #[tokio::test]
    async fn a_finish_is_stored_once_whatever_is_retried() {
        let s = setup().await;
        let (a, b) = (echo("ana"), echo("ben"));
        s.tasks
            .insert_tasks(vec![a.clone(), b.clone()])
            .await
            .unwrap();
        let finish = |t: &Task, seq| Finish {
            task_id: t.id,
            user_id: t.user_id.clone(),
            user_seq: seq,
            outcome: TaskOutcome::Completed,
            at: clock::now(),
        };
        let first = vec![finish(&a, 2)];
        s.feed.append(&first).await.unwrap();
        s.feed.append(&first).await.unwrap();
        s.feed
            .append(&[finish(&a, 2), finish(&b, 2)])
            .await
            .unwrap();
        let fed = finished_events(&s.feed.events).await;
        let ids: Vec<String> = fed.iter().map(|f| f.task_id.clone()).collect();
        assert_eq!(ids, [a.id.to_string(), b.id.to_string()]);
        // A finish of a task deleted since is not fed.
        s.feed.append(&[finish(&echo("cy"), 1)]).await.unwrap();
        assert_eq!(finished_events(&s.feed.events).await.len(), 2);
    }
}
