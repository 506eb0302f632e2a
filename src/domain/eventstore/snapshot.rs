//! Snapshots: a stream's state folded up to a version, so a reader replays only what follows.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{EventError, StreamId};

/// A stream's state as of `version` (seed 002's Snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream.
    pub stream_id: StreamId,
    /// The version of the last event folded into `data`; at least 1.
    pub version: u64,
    /// The folded state, in whatever shape its owner reads back.
    pub data: Value,
    /// When it was taken (microseconds).
    pub created_at: DateTime<Utc>,
}

impl Snapshot {
    /// A snapshot of `stream_id` at `version`, taken at `now` (cut to microseconds).
    pub fn new(stream_id: StreamId, version: u64, data: Value, now: DateTime<Utc>) -> Self {
        Self {
            stream_id,
            version,
            data,
            created_at: now.trunc_subsecs(6),
        }
    }
}

/// When to take snapshots and how many to keep (seed 002: every 100 events, the last 3).
///
/// The store keeps the last `keep` of each stream when one is saved, and tells each appender
/// whether its append made one due ([`Appended::snapshot_due`](super::Appended)); taking it is
/// the appender's business, since only it can fold the stream's events into a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPolicy {
    /// A snapshot is due each time a stream's version passes a multiple of this.
    every: u64,
    /// Snapshots kept per stream; older ones are deleted as new ones are saved.
    keep: u32,
}

impl SnapshotPolicy {
    /// Every `every` events, keeping the last `keep`; both at least 1.
    pub fn new(every: u64, keep: u32) -> Result<Self, EventError> {
        if every == 0 || keep == 0 {
            return Err(EventError::Invalid(
                "a snapshot policy needs an interval and a count of at least 1".into(),
            ));
        }
        Ok(Self { every, keep })
    }

    /// The interval, in events.
    pub fn every(self) -> u64 {
        self.every
    }

    /// Snapshots kept per stream.
    pub fn keep(self) -> u32 {
        self.keep
    }

    /// Whether a stream that went from version `before` to `after` passed a multiple of the
    /// interval (so one append of many events makes at most one snapshot due).
    pub fn is_due(self, before: u64, after: u64) -> bool {
        after / self.every > before / self.every
    }
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            every: 100,
            keep: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_when_a_multiple_is_passed() {
        let p = SnapshotPolicy::new(100, 3).unwrap();
        assert!(!p.is_due(0, 99));
        assert!(p.is_due(99, 100));
        assert!(p.is_due(50, 250));
        assert!(!p.is_due(100, 199));
        assert!(p.is_due(199, 200));
        assert_eq!(p, SnapshotPolicy::default());
        assert!(SnapshotPolicy::new(0, 3).is_err());
        assert!(SnapshotPolicy::new(10, 0).is_err());
    }
}
