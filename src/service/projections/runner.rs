//! One projection's loop on one instance: hold the lease, fold batches, rebuild, park.
//!
//! Only the lease holder works; the others renew nothing and try again every
//! [`RunnerSettings::renew_every`], so one takes over within a lease period of the holder's
//! death (at once after a clean shutdown, which releases the lease). Correctness does not hang
//! on the lease: each batch moves the checkpoint by compare-and-set in its own transaction, so
//! two runners that overlap for a moment still apply each batch once.
//!
//! Failures: a database that does not answer is waited out with a capped backoff and never
//! parks. An event the handler cannot fold, or that the database refuses, is retried alone
//! (the batch is narrowed to one event until past the failing batch) with a growing backoff;
//! after [`RunnerSettings::max_failures`] tries on the same event the projection parks there,
//! its error shown to admins, until an admin resumes or rebuilds it. Nothing is skipped.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::StoreHead;
use super::handler::{Unfoldable, work};
use crate::clock;
use crate::domain::eventstore::PersistedEvent;
use crate::domain::projection::{Parked, ProjectionName, ProjectionStatus};
use crate::store::StoreError;
use crate::store::eventstore::{EventStore, EventStoreError};
use crate::store::progress::{ApplyError, Batch, ProjectionStore};
use crate::telemetry::metrics;

/// How a runner works.
#[derive(Debug, Clone, Copy)]
pub struct RunnerSettings {
    /// Most events per batch (one transaction).
    pub batch: u32,
    /// How long a lease holds without renewal: the longest a dead holder blocks the others.
    pub lease: Duration,
    /// How often the lease is renewed (and the status re-read), and others try to take it.
    pub renew_every: Duration,
    /// Tries on one event before the projection parks.
    pub max_failures: u32,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            batch: 500,
            lease: Duration::from_secs(5),
            renew_every: Duration::from_secs(1),
            max_failures: 3,
        }
    }
}

/// One generation being folded, as this runner knows it.
#[derive(Debug, Clone, Copy)]
struct Generation {
    /// Which.
    id: u64,
    /// Its checkpoint.
    position: u64,
    /// While the checkpoint is below this, batches hold one event (finding the one that fails).
    narrow_until: Option<u64>,
}

impl Generation {
    fn new(id: u64, position: u64) -> Self {
        Self {
            id,
            position,
            narrow_until: None,
        }
    }
}

/// What the runner knows of its projection while it holds the lease.
#[derive(Debug, Clone, Copy)]
struct View {
    active: Generation,
    rebuild: Option<Generation>,
    parked: bool,
}

impl View {
    fn of(s: &ProjectionStatus) -> Self {
        Self {
            active: Generation::new(s.active_generation, s.position),
            rebuild: s.rebuild.map(|(g, p)| Generation::new(g, p)),
            parked: s.parked.is_some(),
        }
    }

    /// The status re-read, keeping what this runner knows of generations that did not change.
    fn refresh(self, s: &ProjectionStatus) -> Self {
        let mut next = Self::of(s);
        if next.active.id == self.active.id {
            next.active.narrow_until = self.active.narrow_until;
        }
        if let (Some(r), Some(old)) = (next.rebuild.as_mut(), self.rebuild)
            && r.id == old.id
        {
            r.narrow_until = old.narrow_until;
        }
        next
    }
}

/// How one attempt at a batch went.
enum Advance {
    /// Moved the checkpoint (or learned it had moved); there may be more.
    Moved,
    /// Nothing to read: at the head.
    AtHead,
}

/// Why an attempt failed.
enum Failure {
    /// The database did not answer: wait and try again, for as long as it takes.
    Transient(String),
    /// The event at `position` cannot be folded (or its write is refused).
    Poison { position: u64, error: String },
}

/// Consecutive failures on one event.
#[derive(Debug, Default)]
struct Failures {
    position: u64,
    count: u32,
    transient: u32,
}

/// Whether a database error may pass by itself: no connection, the server going away or
/// overloaded, a conflict with another transaction, SQLite busy. A statement the server
/// refuses for its content (a constraint, a value too long) fails the same way every time.
fn is_transient(e: &StoreError) -> bool {
    match e {
        StoreError::Unavailable(sqlx::Error::Database(d)) => {
            let code = d.code().unwrap_or_default();
            ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c))
                || ["5", "6", "261", "517", "262"].contains(&code.as_ref())
        }
        StoreError::Unavailable(_) => true,
        StoreError::Corrupt(_) | StoreError::Migrate(_) => false,
    }
}

/// One projection's loop.
pub(super) struct Runner {
    pub(super) name: ProjectionName,
    pub(super) events: Arc<dyn EventStore>,
    pub(super) store: Arc<dyn ProjectionStore>,
    pub(super) head: StoreHead,
    /// This instance, as lease owner.
    pub(super) owner: String,
    pub(super) settings: RunnerSettings,
}

impl Runner {
    /// Runs until `cancel`, then releases the lease.
    pub(super) async fn run(self, cancel: CancellationToken) {
        let mut head = self.head.subscribe();
        let mut holding = false;
        let mut view: Option<View> = None;
        let mut renew_at = Instant::now();
        let mut failures = Failures::default();
        loop {
            if cancel.is_cancelled() {
                break;
            }
            if Instant::now() >= renew_at {
                renew_at = Instant::now() + self.settings.renew_every;
                let held = self.renew().await;
                if held && !holding {
                    tracing::info!(projection = %self.name, owner = %self.owner, "projection lease taken");
                } else if !held && holding {
                    tracing::info!(projection = %self.name, "projection lease lost");
                }
                holding = held;
                view = if holding {
                    self.refresh(view).await
                } else {
                    None
                };
            }
            let Some(v) = view.as_mut().filter(|v| holding && !v.parked) else {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep_until(renew_at) => {}
                }
                continue;
            };
            let wait = match self.step(v).await {
                Ok(Advance::Moved) => {
                    failures = Failures::default();
                    continue;
                }
                Ok(Advance::AtHead) => {
                    failures = Failures::default();
                    None
                }
                Err(f) => Some(self.failed(f, &mut failures, v).await),
            };
            head.borrow_and_update();
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(renew_at) => {}
                _ = head.changed(), if wait.is_none() => {}
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
            }
        }
        if holding && let Err(e) = self.store.release_lease(self.name, &self.owner).await {
            tracing::warn!(projection = %self.name, error = %e, "projection lease not released");
        }
    }

    /// Takes or renews the lease; whether this runner holds it.
    async fn renew(&self) -> bool {
        let now = clock::now();
        let until = now + chrono::TimeDelta::from_std(self.settings.lease).unwrap_or_default();
        match self
            .store
            .acquire_lease(self.name, &self.owner, until, now)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(projection = %self.name, error = %e, "projection lease unrenewed");
                false
            }
        }
    }

    /// The stored status, merged into what the runner knew.
    async fn refresh(&self, view: Option<View>) -> Option<View> {
        match self.store.status(self.name).await {
            Ok(s) => Some(match view {
                Some(v) => v.refresh(&s),
                None => View::of(&s),
            }),
            Err(e) => {
                tracing::warn!(projection = %self.name, error = %e, "projection status unread");
                None
            }
        }
    }

    /// One batch of the active generation, then one of the rebuild's; swaps the rebuild in
    /// once it has reached the head.
    async fn step(&self, view: &mut View) -> Result<Advance, Failure> {
        let active = self.advance(&mut view.active, true).await?;
        let Some(mut rebuild) = view.rebuild else {
            return Ok(active);
        };
        let rebuilt = self.advance(&mut rebuild, false).await?;
        view.rebuild = Some(rebuild);
        match rebuilt {
            Advance::AtHead if rebuild.position >= view.active.position => {
                self.swap(view, rebuild).await?;
                Ok(Advance::Moved)
            }
            Advance::AtHead => Ok(active),
            Advance::Moved => Ok(Advance::Moved),
        }
    }

    /// Makes the caught-up rebuild the active generation and drops the old one.
    async fn swap(&self, view: &mut View, rebuild: Generation) -> Result<(), Failure> {
        let transient = |e: StoreError| Failure::Transient(e.to_string());
        if let Some(old) = self
            .store
            .swap(self.name, rebuild.id)
            .await
            .map_err(transient)?
        {
            tracing::info!(projection = %self.name, generation = rebuild.id, position = rebuild.position, "rebuild swapped in");
            view.active = rebuild;
            view.rebuild = None;
            self.store
                .drop_generation(self.name, old)
                .await
                .map_err(transient)?;
        } else {
            // Another rebuild was started meanwhile: read where things stand.
            if let Some(v) = self.refresh(Some(*view)).await {
                *view = v;
            }
        }
        Ok(())
    }

    /// Folds the next batch of `g` and moves its checkpoint.
    async fn advance(&self, g: &mut Generation, active: bool) -> Result<Advance, Failure> {
        let narrow = g.narrow_until.is_some_and(|n| g.position < n);
        if !narrow {
            g.narrow_until = None;
        }
        let limit = if narrow { 1 } else { self.settings.batch };
        let events = self
            .events
            .read_all_events(g.position + 1, limit)
            .await
            .map_err(|e| match e {
                EventStoreError::Store(s) if !is_transient(&s) => Failure::Poison {
                    position: g.position + 1,
                    error: s.to_string(),
                },
                other => Failure::Transient(other.to_string()),
            })?;
        let Some(last) = events.last().map(|e| e.global_position) else {
            return Ok(Advance::AtHead);
        };
        let (batch_work, events, to) = match work(self.name, &events) {
            Ok(w) => (w, &events[..], last),
            Err(Unfoldable { index: 0, error }) => {
                return Err(Failure::Poison {
                    position: events[0].global_position,
                    error,
                });
            }
            // Fold what comes before the event that cannot be; it fails on its own next.
            Err(Unfoldable { index, error }) => {
                let before = &events[..index];
                let w = work(self.name, before).map_err(|_| Failure::Poison {
                    position: events[index].global_position,
                    error,
                })?;
                (w, before, events[index - 1].global_position)
            }
        };
        let batch = Batch {
            name: self.name,
            generation: g.id,
            from: g.position,
            to,
            work: batch_work,
        };
        match self.store.apply(batch).await {
            Ok(()) => {
                g.position = to;
                if active {
                    observe_lag(self.name, events);
                }
                Ok(Advance::Moved)
            }
            Err(ApplyError::Moved(_)) => {
                let position = self
                    .store
                    .checkpoint(self.name, g.id)
                    .await
                    .map_err(|e| Failure::Transient(e.to_string()))?;
                tracing::info!(projection = %self.name, generation = g.id, ?position, "checkpoint moved by another runner");
                g.position = position.unwrap_or(g.position);
                Ok(Advance::Moved)
            }
            Err(ApplyError::Store(e)) if is_transient(&e) => Err(Failure::Transient(e.to_string())),
            Err(ApplyError::Store(e)) if events.len() > 1 => {
                // Find the event the database refuses: one at a time up to this batch's end.
                tracing::warn!(projection = %self.name, error = %e, "batch refused; narrowing");
                g.narrow_until = Some(to);
                Ok(Advance::Moved)
            }
            Err(ApplyError::Store(e)) => Err(Failure::Poison {
                position: to,
                error: e.to_string(),
            }),
        }
    }

    /// Counts a failure; parks on an event that failed too often. How long to wait.
    async fn failed(&self, f: Failure, failures: &mut Failures, view: &mut View) -> Duration {
        match f {
            Failure::Transient(error) => {
                failures.transient += 1;
                let wait = backoff(
                    failures.transient,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                );
                tracing::warn!(projection = %self.name, %error, retry_in = ?wait, "projection waiting for the database");
                wait
            }
            Failure::Poison { position, error } => {
                if failures.position != position {
                    *failures = Failures {
                        position,
                        ..Failures::default()
                    };
                }
                failures.count += 1;
                if failures.count < self.settings.max_failures {
                    let wait = backoff(
                        failures.count,
                        Duration::from_millis(200),
                        Duration::from_secs(5),
                    );
                    tracing::warn!(projection = %self.name, position, %error, retry_in = ?wait, "event not folded; retrying");
                    return wait;
                }
                tracing::error!(projection = %self.name, position, %error, "projection parked");
                let parked = Parked {
                    position,
                    error,
                    at: clock::now(),
                };
                match self.store.park(self.name, parked).await {
                    Ok(()) => view.parked = true,
                    Err(e) => {
                        tracing::warn!(projection = %self.name, error = %e, "park not recorded")
                    }
                }
                *failures = Failures::default();
                Duration::from_secs(1)
            }
        }
    }
}

/// `base` doubled per try after the first, at most `cap`.
fn backoff(tries: u32, base: Duration, cap: Duration) -> Duration {
    base.saturating_mul(1 << tries.saturating_sub(1).min(16))
        .min(cap)
}

/// Each event's time from commit to its fold's commit.
fn observe_lag(name: ProjectionName, events: &[PersistedEvent]) {
    let now = clock::now();
    for e in events {
        let lag = (now - e.created_at).to_std().unwrap_or_default();
        metrics::projection_event_lag(name.as_str(), lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let b = |n| backoff(n, Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b(1), Duration::from_millis(100));
        assert_eq!(b(2), Duration::from_millis(200));
        assert_eq!(b(9), Duration::from_secs(1));
    }

    #[test]
    fn lost_connections_are_transient_refusals_are_not() {
        assert!(is_transient(&StoreError::Unavailable(
            sqlx::Error::PoolTimedOut
        )));
        assert!(!is_transient(&StoreError::Corrupt("x".into())));
    }
}
