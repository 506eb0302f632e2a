//! Projections: the read models the service keeps from the event store, where each stands,
//! and how far behind the store's head it is.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::DomainError;

/// A projection the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionName {
    /// UserProgress and DailyStats, from the learning events.
    Progress,
    /// Tasks by type and outcome, tokens and cost per user and day, from `TaskFinished`.
    TaskStats,
}

impl ProjectionName {
    /// Every projection.
    pub const ALL: [Self; 2] = [Self::Progress, Self::TaskStats];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progress => "progress",
            Self::TaskStats => "task_stats",
        }
    }

    /// The projection with this name.
    pub fn parse(name: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| {
                DomainError::Invalid(format!(
                    "no projection {name:?} (there are: progress, task_stats)"
                ))
            })
    }
}

impl fmt::Display for ProjectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A projection stopped on an event its handler keeps failing on, until an admin acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parked {
    /// The global position of the event.
    pub position: u64,
    /// What the handler said, the last time.
    pub error: String,
    /// When it was parked.
    pub at: DateTime<Utc>,
}

/// Where a projection stands, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    /// Which.
    pub name: ProjectionName,
    /// The generation readers read.
    pub active_generation: u64,
    /// The last position folded into the active generation.
    pub position: u64,
    /// A rebuild in progress: its generation and position. Readers keep the active one until
    /// it has caught up and is swapped in.
    pub rebuild: Option<(u64, u64)>,
    /// Set while parked.
    pub parked: Option<Parked>,
    /// The instance holding the lease (which runs it), if any.
    pub owner: Option<String>,
    /// Until when that lease holds without renewal.
    pub lease_until: Option<DateTime<Utc>>,
    /// The runner's last sign of life.
    pub heartbeat_at: Option<DateTime<Utc>>,
}

/// How far behind the store's head a projection is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lag {
    /// The store's last position.
    pub head: u64,
    /// Events committed but not yet folded into the active generation.
    pub events_behind: u64,
    /// How long the oldest of them has been waiting (0 when none is).
    pub oldest_unprocessed_age: Duration,
    /// Time since the runner's last heartbeat, if it ever beat.
    pub heartbeat_age: Option<Duration>,
}

impl Lag {
    /// The lag of a projection at `position` when the head is `head`, the first unprocessed
    /// event was recorded at `oldest` and the runner beat last at `heartbeat`, as of `now`.
    pub fn of(
        position: u64,
        head: u64,
        oldest: Option<DateTime<Utc>>,
        heartbeat: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let since = |t: DateTime<Utc>| (now - t).to_std().unwrap_or_default();
        let events_behind = head.saturating_sub(position);
        Self {
            head,
            events_behind,
            oldest_unprocessed_age: match oldest {
                Some(t) if events_behind > 0 => since(t),
                _ => Duration::ZERO,
            },
            heartbeat_age: heartbeat.map(since),
        }
    }

    /// Whether the oldest waiting event has waited longer than `threshold`.
    pub fn is_lagging(&self, threshold: Duration) -> bool {
        self.oldest_unprocessed_age > threshold
    }
}

impl ProjectionStatus {
    /// `parked`, `rebuilding`, `running` (a live lease) or `stopped` (no instance runs it).
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if self.parked.is_some() {
            "parked"
        } else if self.lease_until.is_none_or(|t| t <= now) {
            "stopped"
        } else if self.rebuild.is_some() {
            "rebuilding"
        } else {
            "running"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in ProjectionName::ALL {
            assert_eq!(ProjectionName::parse(p.as_str()), Ok(p));
        }
        assert!(ProjectionName::parse("nope").is_err());
    }

    #[test]
    fn lag_counts_events_and_ages() {
        let now = Utc::now();
        let old = now - chrono::TimeDelta::seconds(40);
        let lag = Lag::of(10, 15, Some(old), Some(now), now);
        assert_eq!(lag.events_behind, 5);
        assert_eq!(lag.oldest_unprocessed_age, Duration::from_secs(40));
        assert!(lag.is_lagging(Duration::from_secs(30)));
        let caught_up = Lag::of(15, 15, Some(old), None, now);
        assert_eq!(caught_up.oldest_unprocessed_age, Duration::ZERO);
        assert!(!caught_up.is_lagging(Duration::from_secs(30)));
    }
}
