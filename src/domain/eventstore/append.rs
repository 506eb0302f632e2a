//! One append: the batch as checked before it reaches the database, and what the store answers.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{EventEnvelope, EventError, EventId, ExpectedVersion, SnapshotPolicy, StreamId};

/// Most events in one append (one statement in PostgreSQL, one transaction in SQLite).
pub const MAX_APPEND_EVENTS: usize = 10_000;

/// Most events one read returns; a larger limit is cut to this.
pub const MAX_READ_LIMIT: u32 = 10_000;

/// Events to append to one stream, checked: at least one, at most [`MAX_APPEND_EVENTS`], ids
/// distinct, metadata within bounds.
#[derive(Debug, Clone)]
pub struct AppendBatch {
    /// The stream.
    stream_id: StreamId,
    /// The events, in the order they get their versions.
    events: Vec<EventEnvelope>,
    /// The version the stream must be at.
    expected: ExpectedVersion,
}

impl AppendBatch {
    /// Checks a batch.
    pub fn new(
        stream_id: StreamId,
        events: Vec<EventEnvelope>,
        expected: ExpectedVersion,
    ) -> Result<Self, EventError> {
        if events.is_empty() || events.len() > MAX_APPEND_EVENTS {
            return Err(EventError::Invalid(format!(
                "an append takes 1-{MAX_APPEND_EVENTS} events, not {}",
                events.len()
            )));
        }
        let mut ids = HashSet::with_capacity(events.len());
        for e in &events {
            if !ids.insert(e.event_id) {
                return Err(EventError::Invalid(format!(
                    "event id {} appears twice in one append",
                    e.event_id
                )));
            }
            e.metadata.check()?;
        }
        Ok(Self {
            stream_id,
            events,
            expected,
        })
    }

    /// The stream.
    pub fn stream_id(&self) -> &StreamId {
        &self.stream_id
    }

    /// The events, in order.
    pub fn events(&self) -> &[EventEnvelope] {
        &self.events
    }

    /// The expected version.
    pub fn expected(&self) -> ExpectedVersion {
        self.expected
    }

    /// How many events.
    pub fn len(&self) -> u64 {
        self.events.len() as u64
    }

    /// Never true: a batch has at least one event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The answer to this batch stored now, its first event at stream version `first_version`
    /// and global position `first_position` (the rest follow one by one).
    pub fn stored(
        &self,
        first_version: u64,
        first_position: u64,
        policy: SnapshotPolicy,
    ) -> Appended {
        let events: Vec<StoredPosition> = (0u64..)
            .zip(&self.events)
            .map(|(i, e)| StoredPosition {
                event_id: e.event_id,
                stream_version: first_version + i,
                global_position: first_position + i,
            })
            .collect();
        let last = first_version + self.len() - 1;
        Appended {
            events,
            stream_version: last,
            already_stored: false,
            snapshot_due: policy.is_due(first_version - 1, last),
        }
    }

    /// Judges a refused append from where its ids are stored (`found`: the stored rows whose
    /// ids are among the batch's, in any order). `None` when none is stored: the refusal
    /// stands. An answer when every event is stored in this stream, in this order, at the
    /// versions this append would have given them: the append is a retry of one that
    /// committed. Otherwise [`EventError::EventIdsReused`].
    pub fn recognise(
        &self,
        found: &[(StreamId, StoredPosition)],
    ) -> Result<Option<Appended>, EventError> {
        if found.is_empty() {
            return Ok(None);
        }
        let reused = || EventError::EventIdsReused {
            stream_id: self.stream_id.clone(),
            event_ids: found.iter().map(|(_, p)| p.event_id).collect(),
        };
        if found.len() != self.events.len() || found.iter().any(|(s, _)| *s != self.stream_id) {
            return Err(reused());
        }
        let mut events = Vec::with_capacity(self.events.len());
        for e in &self.events {
            let (_, stored) = found
                .iter()
                .find(|(_, p)| p.event_id == e.event_id)
                .ok_or_else(reused)?;
            events.push(*stored);
        }
        let first = events[0].stream_version;
        let in_order = (0u64..)
            .zip(&events)
            .all(|(i, p)| p.stream_version == first + i);
        let as_expected = self.expected.version().is_none_or(|v| first == v + 1);
        if !in_order || !as_expected {
            return Err(reused());
        }
        Ok(Some(Appended {
            stream_version: first + self.len() - 1,
            events,
            already_stored: true,
            snapshot_due: false,
        }))
    }
}

/// Where one appended event was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPosition {
    /// The event.
    pub event_id: EventId,
    /// Its version in its stream.
    pub stream_version: u64,
    /// Its global position.
    pub global_position: u64,
}

/// What an append stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// Each event's place, in the batch's order.
    pub events: Vec<StoredPosition>,
    /// The version of the batch's last event: the stream's version right after it.
    pub stream_version: u64,
    /// True when an earlier append with the same event ids had stored them (this one is a
    /// retry): nothing was written now.
    pub already_stored: bool,
    /// Whether the stream passed a multiple of the snapshot interval with this append, so its
    /// owner should save a snapshot (see [`SnapshotPolicy`]).
    pub snapshot_due: bool,
}

impl Appended {
    /// The global position of the batch's last event.
    pub fn last_position(&self) -> u64 {
        self.events.last().map_or(0, |p| p.global_position)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::domain::eventstore::{EventMetadata, EventType};

    fn event() -> EventEnvelope {
        let t = EventType::parse("Happened").unwrap();
        EventEnvelope::new(t, json!({}), EventMetadata::at(Utc::now()))
    }

    fn stream(s: &str) -> StreamId {
        StreamId::parse(s).unwrap()
    }

    #[test]
    fn batches_are_checked() {
        let s = stream("s-1");
        assert!(AppendBatch::new(s.clone(), vec![], ExpectedVersion::Any).is_err());
        let e = event();
        let twice = vec![e.clone(), e];
        assert!(AppendBatch::new(s.clone(), twice, ExpectedVersion::Any).is_err());
        let b = AppendBatch::new(s, vec![event(), event()], ExpectedVersion::Exact(4)).unwrap();
        let stored = b.stored(5, 101, SnapshotPolicy::new(6, 1).unwrap());
        assert_eq!(stored.stream_version, 6);
        assert_eq!(stored.last_position(), 102);
        assert!(stored.snapshot_due);
        assert!(!stored.already_stored);
    }

    #[test]
    fn a_retry_is_recognised_and_a_reuse_refused() {
        let s = stream("s-1");
        let b =
            AppendBatch::new(s.clone(), vec![event(), event()], ExpectedVersion::Exact(2)).unwrap();
        assert_eq!(b.recognise(&[]), Ok(None));
        let at = |i: usize, v, p| {
            let event_id = b.events()[i].event_id;
            (
                s.clone(),
                StoredPosition {
                    event_id,
                    stream_version: v,
                    global_position: p,
                },
            )
        };
        // Stored as this append would have: a retry.
        let answer = b.recognise(&[at(1, 4, 9), at(0, 3, 8)]).unwrap().unwrap();
        assert!(answer.already_stored);
        assert_eq!(answer.events[0].global_position, 8);
        assert_eq!(answer.stream_version, 4);
        // Only one of them, another order, other versions, another stream: reused.
        assert!(b.recognise(&[at(0, 3, 8)]).is_err());
        assert!(b.recognise(&[at(0, 4, 9), at(1, 3, 8)]).is_err());
        assert!(b.recognise(&[at(0, 5, 8), at(1, 6, 9)]).is_err());
        let elsewhere = |(_, p): (StreamId, StoredPosition)| (stream("s-2"), p);
        assert!(
            b.recognise(&[elsewhere(at(0, 3, 8)), elsewhere(at(1, 4, 9))])
                .is_err()
        );
    }
}
