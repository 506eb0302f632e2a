//! The state machines of a pipeline session: each item's stages, the item, the session.
//!
//! A stage is `waiting` until every stage it needs is `completed`, then `ready`; the scheduler
//! makes it `running` when it submits its task (at most `max_parallel_tasks` per session),
//! and the task's end makes it `completed` or `failed`. A failure skips only the stages of
//! the same item that depend on it, directly or not; the item's other stages go on. A
//! cancelled session cancels every stage not yet finished.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::PipelineDef;
use crate::domain::DomainError;

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// The stored and wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, DomainError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(DomainError::Invalid(format!(
                        concat!("unknown ", stringify!($name), " {:?}"), other
                    ))),
                }
            }
        }
    };
}

named_enum!(
    /// Where one stage of one item is.
    StageStatus {
        /// Some stage it needs has no result yet.
        Waiting => "waiting",
        /// Its inputs are stored; it waits for a free slot of its session.
        Ready => "ready",
        /// Its task was submitted and has not finished.
        Running => "running",
        /// Its result is stored.
        Completed => "completed",
        /// Its task failed for good (retries exhausted or not retryable).
        Failed => "failed",
        /// A stage it needs failed, so it never runs.
        Skipped => "skipped",
        /// Its session was cancelled or expired before it finished.
        Cancelled => "cancelled",
    }
);

named_enum!(
    /// Where one item is.
    ItemStatus {
        /// No stage has started.
        Pending => "pending",
        /// Some stage is not finished.
        Processing => "processing",
        /// Every stage completed.
        Completed => "completed",
        /// Every stage finished and some failed (or were skipped after a failure).
        PartiallyFailed => "partially_failed",
        /// Its session was cancelled or expired.
        Cancelled => "cancelled",
    }
);

named_enum!(
    /// Where a session is.
    SessionStatus {
        /// Created; no stage has started.
        Pending => "pending",
        /// Some stage has started and some item is not finished.
        Processing => "processing",
        /// Every item completed.
        Completed => "completed",
        /// Every item finished and some partially failed.
        PartiallyFailed => "partially_failed",
        /// Cancelled by its owner, or expired after `session_ttl` without activity.
        Cancelled => "cancelled",
    }
);

impl StageStatus {
    /// Whether nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }
}

impl SessionStatus {
    /// Whether nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::PartiallyFailed | Self::Cancelled
        )
    }
}

/// The statuses a new item's stages start in: `ready` without needs, else `waiting`.
pub fn initial(def: &PipelineDef) -> Vec<StageStatus> {
    def.stages
        .iter()
        .map(|s| {
            if s.needs.is_empty() {
                StageStatus::Ready
            } else {
                StageStatus::Waiting
            }
        })
        .collect()
}

/// Stage `stage` of an item ended (`ok`: its result is stored). Updates `statuses` and
/// returns the stages whose status changed, `stage` first. Refused unless it was running.
pub fn finish(
    def: &PipelineDef,
    statuses: &mut [StageStatus],
    stage: usize,
    ok: bool,
) -> Result<Vec<usize>, DomainError> {
    if statuses.get(stage) != Some(&StageStatus::Running) {
        return Err(DomainError::Invalid(format!(
            "stage {stage} is not running and cannot finish"
        )));
    }
    let mut changed = vec![stage];
    if ok {
        statuses[stage] = StageStatus::Completed;
        for i in 0..statuses.len() {
            let inputs_stored = def
                .needs_of(i)
                .iter()
                .all(|&n| statuses[n] == StageStatus::Completed);
            if statuses[i] == StageStatus::Waiting && inputs_stored {
                statuses[i] = StageStatus::Ready;
                changed.push(i);
            }
        }
    } else {
        statuses[stage] = StageStatus::Failed;
        // Stages are in dependency order: one pass sees every indirect dependent.
        for i in 0..statuses.len() {
            let blocked = def
                .needs_of(i)
                .iter()
                .any(|&n| matches!(statuses[n], StageStatus::Failed | StageStatus::Skipped));
            if blocked && matches!(statuses[i], StageStatus::Waiting | StageStatus::Ready) {
                statuses[i] = StageStatus::Skipped;
                changed.push(i);
            }
        }
    }
    Ok(changed)
}

/// An item's status from its stages'.
pub fn item_status(statuses: &[StageStatus]) -> ItemStatus {
    use StageStatus as S;
    if statuses.contains(&S::Cancelled) {
        ItemStatus::Cancelled
    } else if !statuses.iter().all(|s| s.is_final()) {
        if statuses.iter().all(|s| matches!(s, S::Waiting | S::Ready)) {
            ItemStatus::Pending
        } else {
            ItemStatus::Processing
        }
    } else if statuses.iter().all(|s| *s == S::Completed) {
        ItemStatus::Completed
    } else {
        ItemStatus::PartiallyFailed
    }
}

/// A session's status once every item is finished: completed unless some item partially
/// failed.
pub fn finished_session(items: impl IntoIterator<Item = ItemStatus>) -> SessionStatus {
    if items.into_iter().any(|i| i == ItemStatus::PartiallyFailed) {
        SessionStatus::PartiallyFailed
    } else {
        SessionStatus::Completed
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, parse_document};
    use super::*;
    use StageStatus as S;

    /// a -> b -> d, a -> c (c independent of b).
    fn def() -> PipelineDef {
        let doc = r#"{"pipelines": [{"name": "p", "stages": [
            {"name": "a", "task_type": "echo"},
            {"name": "b", "task_type": "echo", "needs": ["a"]},
            {"name": "c", "task_type": "echo", "needs": ["a"]},
            {"name": "d", "task_type": "echo", "needs": ["b"]},
            {"name": "e", "task_type": "echo"}
        ]}]}"#;
        parse_document(doc, Format::Json).unwrap().remove(0)
    }

    #[test]
    fn a_stage_is_ready_once_its_inputs_are_stored() {
        let d = def();
        let mut s = initial(&d);
        assert_eq!(s, [S::Ready, S::Waiting, S::Waiting, S::Waiting, S::Ready]);
        assert_eq!(item_status(&s), ItemStatus::Pending);
        assert!(finish(&d, &mut s, 0, true).is_err(), "not running");
        s[0] = S::Running;
        assert_eq!(item_status(&s), ItemStatus::Processing);
        assert_eq!(finish(&d, &mut s, 0, true).unwrap(), [0, 1, 2]);
        assert_eq!(s[..4], [S::Completed, S::Ready, S::Ready, S::Waiting]);
    }

    #[test]
    fn a_failure_skips_only_its_dependents() {
        let d = def();
        let mut s = initial(&d);
        s[0] = S::Running;
        finish(&d, &mut s, 0, true).unwrap();
        s[1] = S::Running;
        assert_eq!(finish(&d, &mut s, 1, false).unwrap(), [1, 3]);
        assert_eq!(s, [S::Completed, S::Failed, S::Ready, S::Skipped, S::Ready]);
        for i in [2, 4] {
            s[i] = S::Running;
            finish(&d, &mut s, i, true).unwrap();
        }
        assert_eq!(item_status(&s), ItemStatus::PartiallyFailed);
        assert_eq!(
            finished_session([ItemStatus::Completed, ItemStatus::PartiallyFailed]),
            SessionStatus::PartiallyFailed
        );
        assert_eq!(
            finished_session([ItemStatus::Completed]),
            SessionStatus::Completed
        );
    }

    #[test]
    fn names_round_trip() {
        for s in [S::Waiting, S::Ready, S::Running, S::Skipped, S::Cancelled] {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
        }
        assert!("nope".parse::<SessionStatus>().is_err());
        assert!(SessionStatus::Cancelled.is_final() && !SessionStatus::Processing.is_final());
    }
}
