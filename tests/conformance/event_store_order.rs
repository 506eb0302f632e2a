//! The global order under load, on both databases: 16 appenders at once, some of whose
//! appends roll back after taking their positions, and a catch-up reader polling
//! `read_all_events` all along, which must see every committed event exactly once, in
//! increasing position order.
//!
//! The rollbacks are the real code path's: an append whose last event reuses an id already
//! stored fails on the unique key after its other events were inserted with their positions
//! (the whole statement, or transaction, is undone), and appends that expect a stale version
//! are refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ai_integration_service::domain::eventstore::{EventError, EventId, ExpectedVersion};
use ai_integration_service::store::eventstore::{EventStore, EventStoreError};

use crate::event_store::{event_store_tests, events, stream};

/// Appenders running at once.
const APPENDERS: usize = 16;
/// Appends each.
const ROUNDS: usize = 30;
/// The reader's page: large enough that the reader keeps up and polls at the head, where a
/// late commit can be skipped. (With positions from a sequence instead of the counter row,
/// this test missed 41-127 of ~1,300 events per run; with pages of 7 the reader lagged
/// behind every late commit and missed none.)
const PAGE: u32 = 64;

// Every appender on its own connection at once, with the reader and the lookups of refused
// appends beside them.
event_store_tests!(connections = 20; sixteen_appenders_and_a_catch_up_reader);

/// What one appender did.
#[derive(Default)]
struct Tally {
    /// Committed events: id -> the position the append answered.
    committed: HashMap<EventId, u64>,
    /// Appends refused for a stale version.
    conflicts: usize,
    /// Appends undone after their events were inserted (reused id).
    rollbacks: usize,
}

async fn sixteen_appenders_and_a_catch_up_reader(store: Arc<dyn EventStore>) {
    let done = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(catch_up(store.clone(), done.clone()));
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|i| tokio::spawn(appender(store.clone(), i)))
        .collect();
    let mut all = Tally::default();
    for a in appenders {
        let t = a.await.unwrap();
        all.committed.extend(t.committed);
        all.conflicts += t.conflicts;
        all.rollbacks += t.rollbacks;
    }
    done.store(true, Ordering::SeqCst);
    let (seen, pages_while_appending) = reader.await.unwrap();

    assert!(
        all.rollbacks > 0 && all.conflicts > 0,
        "no rollback happened"
    );
    assert!(pages_while_appending > 0, "the reader never read alongside");
    let unique: HashMap<EventId, u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was seen twice");
    assert_eq!(seen.len(), all.committed.len(), "seen vs committed");
    assert_eq!(unique, all.committed, "an event was missed or misplaced");
    assert_eq!(
        store.last_position().await.unwrap(),
        seen.last().map_or(0, |(_, p)| *p)
    );
}

/// Reads the global stream from the start until it has caught up after `done`; checks each
/// position is above the last. Returns what it saw, and how many non-empty pages it read
/// before `done`.
async fn catch_up(
    store: Arc<dyn EventStore>,
    done: Arc<AtomicBool>,
) -> (Vec<(EventId, u64)>, usize) {
    let (mut seen, mut next, mut last, mut pages) = (Vec::new(), 0u64, 0u64, 0);
    loop {
        // Read before the page: an empty page after every append ended means all is seen.
        let finished = done.load(Ordering::SeqCst);
        let page = store.read_all_events(next, PAGE).await.unwrap();
        for e in &page {
            assert!(
                e.global_position > last,
                "position {} after {last}",
                e.global_position
            );
            last = e.global_position;
            seen.push((e.event_id, e.global_position));
        }
        match page.last() {
            Some(e) => {
                next = e.global_position + 1;
                pages += usize::from(!finished);
            }
            None if finished => return (seen, pages),
            None => tokio::time::sleep(Duration::from_micros(200)).await,
        }
    }
}

/// One appender: appends to its own stream at exact versions, to shared streams at any
/// version or at a version it read a moment ago (a race it may lose), and batches whose last
/// event reuses one of its stored ids (undone after insertion).
async fn appender(store: Arc<dyn EventStore>, i: usize) -> Tally {
    let mut tally = Tally::default();
    let own = stream(&format!("own-{i}"));
    let mut own_version = 0;
    let mut stored_ids: Vec<EventId> = Vec::new();
    for r in 0..ROUNDS {
        let n = 1 + (i * 7 + r * 3) % 9;
        let shared = stream(&format!("shared-{}", (i + r) % 4));
        let mut batch = events("Tick", n);
        let (target, expected, poisoned) = match (i + r) % 4 {
            0 => (&own, ExpectedVersion::Exact(own_version), false),
            1 => (&shared, ExpectedVersion::Any, false),
            2 => {
                let v = store.stream_version(&shared).await.unwrap();
                tokio::task::yield_now().await;
                (&shared, ExpectedVersion::Exact(v), false)
            }
            _ => match stored_ids.first() {
                Some(&reused) => {
                    // At least one new event before it, so it cannot pass for a retry.
                    batch.extend(events("Tick", 1));
                    batch.last_mut().unwrap().event_id = reused;
                    (&shared, ExpectedVersion::Any, true)
                }
                // Nothing stored yet: a stale version of its own stream instead.
                None => (&own, ExpectedVersion::Exact(own_version + 1), false),
            },
        };
        match store.append_events(target, batch.clone(), expected).await {
            Ok(appended) => {
                assert!(!poisoned && !appended.already_stored);
                if *target == own {
                    own_version = appended.stream_version;
                }
                for (e, place) in batch.iter().zip(&appended.events) {
                    assert_eq!(e.event_id, place.event_id);
                    tally
                        .committed
                        .insert(place.event_id, place.global_position);
                    stored_ids.push(place.event_id);
                }
            }
            Err(EventStoreError::Rejected(EventError::VersionConflict { .. })) if !poisoned => {
                tally.conflicts += 1
            }
            Err(EventStoreError::Rejected(EventError::EventIdsReused { .. })) if poisoned => {
                tally.rollbacks += 1
            }
            Err(e) => panic!("appender {i} round {r}: {e}"),
        }
    }
    tally
}
