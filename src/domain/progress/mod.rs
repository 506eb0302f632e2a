//! The Progress context (seed 002): the learning events that feed it, and how they fold into
//! its read models, UserProgress and DailyStats. Also the service's own task outcomes as
//! events (`TaskFinished`), folded into per-user, per-day task statistics.
//!
//! Pure: no I/O and no clock. The store loads the rows a batch of events touches, folds the
//! batch here ([`ProgressFold`], [`TaskStatsFold`]) and writes the result back in the same
//! transaction as the projection's checkpoint; readers turn stored state into the values they
//! serve with [`UserProgress::from_state`] and [`DailyStats::from_counts`], given today's date.
//!
//! What seed 002 leaves open, decided here (README, "Event store and progress"):
//! - **Days** are calendar days in the user's time zone ([`UserTimeZone`], an IANA name set by
//!   `UserCreated` or `UserSettingsChanged`, UTC until then), taken from each event's
//!   `metadata.timestamp`. A change of zone applies to the events that follow it.
//! - **Streak**: consecutive days with at least one `SessionCompleted`. It is current while
//!   the last such day is today or yesterday, else 0. A session dated before the last study
//!   day (a late event) does not change it.
//! - **Accuracy**: correct answers / all answers (`CorrectAnswerGiven`, `WrongAnswerGiven`),
//!   0 when there are none; per day in DailyStats.
//! - **Mastery** buckets from each item's latest `ReviewProcessed.new_interval` (days):
//!   unlearned (met in a session but not reviewed yet, or interval 0), learning (1-6),
//!   short-term mastered (7-20), long-term mastered (21 or more; Anki's "mature").
//! - **Items learned**: items that reached an interval of 1 day or more at least once.

mod events;
mod fold;
mod mastery;
mod read;
mod tasks;
mod zone;

pub use events::{
    AnswerGiven, LearningEvent, ReviewProcessed, SessionCompleted, SessionStarted, TASK_FINISHED,
    UserCreated, UserSettingsChanged, check_append, event_user,
};
pub use fold::{DailyCounts, ItemKey, ItemState, ProgressFold, UserState};
pub use mastery::{MasteryBucket, MasteryStats};
pub use read::{DailyStats, UserProgress, accuracy};
pub use tasks::{TaskFinished, TaskOutcome, TaskStatsFold, TaskStatsKey, TaskStatsRow};
pub use zone::UserTimeZone;
