//! Folding learning events into the Progress read models' state.
//!
//! The store loads the state of the users and items a batch touches ([`ProgressFold::needs`]),
//! folds the batch in order, then writes back the changed users and items and adds the
//! per-day counts, in the projection's transaction. Daily counts only ever grow, so they are
//! kept as increments ([`DailyCounts`]) that the store adds to the stored row: a batch never
//! has to read a day's row.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};

use super::{LearningEvent, MasteryBucket, MasteryStats, UserTimeZone};
use crate::domain::UserId;

/// An item of one user.
pub type ItemKey = (UserId, String);

/// What the read model keeps per user (one `progress_users` row).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserState {
    /// Where the user's days begin.
    pub time_zone: UserTimeZone,
    /// `SessionCompleted` events.
    pub sessions_completed: u64,
    /// Sum of their `duration_seconds`.
    pub study_seconds: u64,
    /// `CorrectAnswerGiven` events.
    pub correct_answers: u64,
    /// `WrongAnswerGiven` events.
    pub wrong_answers: u64,
    /// Items that reached an interval of a day or more at least once.
    pub items_learned: u64,
    /// Consecutive study days ending at `last_study_day`.
    pub streak_days: u32,
    /// The last day (in the user's zone) with a completed session.
    pub last_study_day: Option<NaiveDate>,
    /// Items per mastery bucket.
    pub mastery: MasteryStats,
    /// The timestamp of the last event folded (the read model's "last updated").
    pub last_event_at: Option<DateTime<Utc>>,
}

/// What the read model keeps per item of a user (one `progress_items` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemState {
    /// The interval of its latest review; `None` before the first.
    pub interval_days: Option<u32>,
    /// Whether it ever reached an interval of a day or more.
    pub learned: bool,
}

/// Per user and day counts a batch adds (one `progress_daily` row holds their sums).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DailyCounts {
    /// Sessions completed.
    pub sessions_completed: u64,
    /// Items learned for the first time.
    pub items_learned: u64,
    /// Reviews processed.
    pub items_reviewed: u64,
    /// Seconds studied.
    pub study_seconds: u64,
    /// Correct answers.
    pub correct_answers: u64,
    /// Wrong answers.
    pub wrong_answers: u64,
    /// Items that became mastered (interval 7 days or more) from below.
    pub new_mastery_count: u64,
}

/// A batch being folded: the loaded state, changed in place, and the day counts it adds.
#[derive(Debug, Default)]
pub struct ProgressFold {
    /// Users as loaded (absent: no row yet), then as folded.
    users: HashMap<UserId, UserState>,
    /// Items as loaded, then as folded.
    items: HashMap<ItemKey, ItemState>,
    /// Users changed by the batch, to write back.
    changed_users: BTreeSet<UserId>,
    /// Items changed by the batch, to write back.
    changed_items: BTreeSet<ItemKey>,
    /// Counts to add per user and day.
    daily: BTreeMap<(UserId, NaiveDate), DailyCounts>,
}

impl ProgressFold {
    /// The users and items whose stored state folding `events` needs.
    pub fn needs<'a>(
        events: impl IntoIterator<Item = (&'a UserId, &'a LearningEvent)>,
    ) -> (BTreeSet<UserId>, BTreeSet<ItemKey>) {
        let mut users = BTreeSet::new();
        let mut items = BTreeSet::new();
        for (user, event) in events {
            users.insert(user.clone());
            if let Some(item) = event.item() {
                items.insert((user.clone(), item.to_owned()));
            }
        }
        (users, items)
    }

    /// A fold over the stored state of the users and items it needs (missing ones are new).
    pub fn new(users: HashMap<UserId, UserState>, items: HashMap<ItemKey, ItemState>) -> Self {
        Self {
            users,
            items,
            ..Self::default()
        }
    }

    /// Folds one event about `user` that happened at `at`.
    pub fn apply(&mut self, user: &UserId, event: &LearningEvent, at: DateTime<Utc>) {
        self.changed_users.insert(user.clone());
        if let Some(item) = event.item() {
            self.meet(user, item);
        }
        let state = self.users.entry(user.clone()).or_default();
        if let Some(zone) = event.time_zone() {
            state.time_zone = zone;
        }
        state.last_event_at = Some(state.last_event_at.map_or(at, |t| t.max(at)));
        let day = state.time_zone.day_of(at);
        let mut counts = DailyCounts::default();
        match event {
            LearningEvent::SessionStarted(_)
            | LearningEvent::UserCreated(_)
            | LearningEvent::UserSettingsChanged(_) => {}
            LearningEvent::CorrectAnswerGiven(_) => {
                state.correct_answers += 1;
                counts.correct_answers = 1;
            }
            LearningEvent::WrongAnswerGiven(_) => {
                state.wrong_answers += 1;
                counts.wrong_answers = 1;
            }
            LearningEvent::SessionCompleted(s) => {
                state.sessions_completed += 1;
                state.study_seconds += s.duration_seconds;
                (state.streak_days, state.last_study_day) =
                    extend_streak(state.streak_days, state.last_study_day, day);
                counts.sessions_completed = 1;
                counts.study_seconds = s.duration_seconds;
            }
            LearningEvent::ReviewProcessed(r) => {
                counts.items_reviewed = 1;
                let key = (user.clone(), r.item_id.clone());
                let item = self.items.entry(key).or_default();
                let from = MasteryBucket::of(item.interval_days);
                let to = MasteryBucket::of(Some(r.new_interval));
                item.interval_days = Some(r.new_interval);
                let first_learned = !item.learned && r.new_interval >= 1;
                item.learned |= first_learned;
                state.mastery.shift(from, to);
                if first_learned {
                    state.items_learned += 1;
                    counts.items_learned = 1;
                }
                if to.is_mastered() && !from.is_mastered() {
                    counts.new_mastery_count = 1;
                }
            }
        }
        self.daily
            .entry((user.clone(), day))
            .or_default()
            .add(counts);
    }

    /// Makes sure `user` has a row for `item` (a new item starts unlearned).
    fn meet(&mut self, user: &UserId, item: &str) {
        let key = (user.clone(), item.to_owned());
        if !self.items.contains_key(&key) {
            self.items.insert(key.clone(), ItemState::default());
            let state = self.users.entry(user.clone()).or_default();
            state.mastery.add(MasteryBucket::Unlearned);
        }
        self.changed_items.insert(key);
    }

    /// The users to write back, with their state.
    pub fn changed_users(&self) -> impl Iterator<Item = (&UserId, &UserState)> {
        self.changed_users
            .iter()
            .filter_map(|u| self.users.get(u).map(|s| (u, s)))
    }

    /// The items to write back, with their state.
    pub fn changed_items(&self) -> impl Iterator<Item = (&ItemKey, &ItemState)> {
        self.changed_items
            .iter()
            .filter_map(|k| self.items.get(k).map(|s| (k, s)))
    }

    /// The counts to add, per user and day.
    pub fn daily(&self) -> &BTreeMap<(UserId, NaiveDate), DailyCounts> {
        &self.daily
    }
}

impl DailyCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: DailyCounts) {
        self.sessions_completed += other.sessions_completed;
        self.items_learned += other.items_learned;
        self.items_reviewed += other.items_reviewed;
        self.study_seconds += other.study_seconds;
        self.correct_answers += other.correct_answers;
        self.wrong_answers += other.wrong_answers;
        self.new_mastery_count += other.new_mastery_count;
    }
}

/// The streak after a session completed on `day`, given the streak so far and its last day.
/// A day already counted changes nothing; the next day extends the streak; a later day after
/// a gap starts a new one; an earlier day (a late event) is ignored.
fn extend_streak(streak: u32, last: Option<NaiveDate>, day: NaiveDate) -> (u32, Option<NaiveDate>) {
    match last {
        None => (1, Some(day)),
        Some(last) if day <= last => (streak.max(1), Some(last)),
        Some(last) if last.succ_opt() == Some(day) => (streak + 1, Some(day)),
        Some(_) => (1, Some(day)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ev(t: &str, data: serde_json::Value) -> LearningEvent {
        LearningEvent::decode(t, &data).unwrap().unwrap()
    }

    fn completed(secs: u64) -> LearningEvent {
        ev(
            "SessionCompleted",
            json!({"session_id": "s", "score": 1, "duration_seconds": secs}),
        )
    }

    fn review(item: &str, interval: u32) -> LearningEvent {
        ev(
            "ReviewProcessed",
            json!({"user_id": "u", "item_id": item, "new_interval": interval, "easiness_factor": 2.5}),
        )
    }

    fn answer(correct: bool, item: &str) -> LearningEvent {
        let t = if correct {
            "CorrectAnswerGiven"
        } else {
            "WrongAnswerGiven"
        };
        ev(
            t,
            json!({"session_id": "s", "item_id": item, "response_time_ms": 800}),
        )
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn streaks_count_consecutive_days_and_ignore_late_events() {
        let d = day;
        assert_eq!(
            extend_streak(0, None, d("2026-01-05")),
            (1, Some(d("2026-01-05")))
        );
        let s = extend_streak(1, Some(d("2026-01-05")), d("2026-01-05"));
        assert_eq!(s, (1, Some(d("2026-01-05"))));
        let s = extend_streak(1, Some(d("2026-01-05")), d("2026-01-06"));
        assert_eq!(s, (2, Some(d("2026-01-06"))));
        let s = extend_streak(2, Some(d("2026-01-06")), d("2026-01-04"));
        assert_eq!(s, (2, Some(d("2026-01-06"))));
        let s = extend_streak(2, Some(d("2026-01-06")), d("2026-01-09"));
        assert_eq!(s, (1, Some(d("2026-01-09"))));
    }

    #[test]
    fn sessions_answers_and_reviews_fold_into_user_and_day() {
        let u = UserId::parse("u").unwrap();
        let mut f = ProgressFold::default();
        f.apply(&u, &answer(true, "i1"), at("2026-01-05T10:00:00Z"));
        f.apply(&u, &answer(false, "i2"), at("2026-01-05T10:01:00Z"));
        f.apply(&u, &answer(true, "i1"), at("2026-01-05T10:02:00Z"));
        f.apply(&u, &completed(330), at("2026-01-05T10:05:00Z"));
        f.apply(&u, &review("i1", 1), at("2026-01-05T10:06:00Z"));
        f.apply(&u, &review("i1", 8), at("2026-01-06T10:00:00Z"));
        f.apply(&u, &review("i1", 0), at("2026-01-07T10:00:00Z"));
        f.apply(&u, &review("i1", 3), at("2026-01-08T10:00:00Z"));
        f.apply(&u, &completed(60), at("2026-01-06T11:00:00Z"));
        let (_, s) = f.changed_users().next().unwrap();
        assert_eq!((s.correct_answers, s.wrong_answers), (2, 1));
        assert_eq!((s.sessions_completed, s.study_seconds), (2, 390));
        assert_eq!(
            (s.streak_days, s.last_study_day),
            (2, Some(day("2026-01-06")))
        );
        // i1 learned once despite its lapse; i2 met but never reviewed.
        assert_eq!(s.items_learned, 1);
        let m = s.mastery;
        assert_eq!((m.unlearned, m.learning, m.short_term_mastered), (1, 1, 0));
        assert_eq!(s.last_event_at, Some(at("2026-01-08T10:00:00Z")));
        let d5 = f.daily()[&(u.clone(), day("2026-01-05"))];
        assert_eq!(
            (
                d5.correct_answers,
                d5.wrong_answers,
                d5.sessions_completed,
                d5.study_seconds
            ),
            (2, 1, 1, 330)
        );
        assert_eq!((d5.items_reviewed, d5.items_learned), (1, 1));
        let d6 = f.daily()[&(u.clone(), day("2026-01-06"))];
        assert_eq!((d6.new_mastery_count, d6.items_reviewed), (1, 1));
        assert_eq!(f.changed_items().count(), 2);
    }

    #[test]
    fn days_are_the_users_own_from_the_event_that_sets_the_zone() {
        let u = UserId::parse("u").unwrap();
        let mut f = ProgressFold::default();
        // 20:00 UTC: still the 5th in UTC.
        f.apply(&u, &completed(60), at("2026-01-05T20:00:00Z"));
        f.apply(
            &u,
            &ev(
                "UserSettingsChanged",
                json!({"user_id": "u", "time_zone": "Asia/Tokyo"}),
            ),
            at("2026-01-05T20:30:00Z"),
        );
        // 21:00 UTC is the 6th in Tokyo: the next day, so the streak grows.
        f.apply(&u, &completed(60), at("2026-01-05T21:00:00Z"));
        let (_, s) = f.changed_users().next().unwrap();
        assert_eq!(s.time_zone.name(), "Asia/Tokyo");
        assert_eq!(
            (s.streak_days, s.last_study_day),
            (2, Some(day("2026-01-06")))
        );
        assert!(f.daily().contains_key(&(u, day("2026-01-06"))));
    }

    #[test]
    fn a_fold_continues_from_loaded_state() {
        let u = UserId::parse("u").unwrap();
        let loaded = UserState {
            mastery: MasteryStats {
                learning: 1,
                ..MasteryStats::default()
            },
            items_learned: 1,
            ..UserState::default()
        };
        let item = ItemState {
            interval_days: Some(3),
            learned: true,
        };
        let mut f = ProgressFold::new(
            HashMap::from([(u.clone(), loaded)]),
            HashMap::from([((u.clone(), "i1".to_owned()), item)]),
        );
        let events = [(u.clone(), review("i1", 25))];
        let (users, items) = ProgressFold::needs(events.iter().map(|(u, e)| (u, e)));
        assert_eq!((users.len(), items.len()), (1, 1));
        f.apply(&u, &events[0].1, at("2026-01-05T10:00:00Z"));
        let (_, s) = f.changed_users().next().unwrap();
        assert_eq!((s.mastery.learning, s.mastery.long_term_mastered), (0, 1));
        assert_eq!(s.items_learned, 1, "already learned");
    }
}
