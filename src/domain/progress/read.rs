//! The read models as served (seed 002's UserProgress and DailyStats), from stored state.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::{DailyCounts, MasteryStats, UserState};
use crate::domain::UserId;

/// Correct answers over all answers; 0 when there are none.
pub fn accuracy(correct: u64, wrong: u64) -> f64 {
    let all = correct + wrong;
    if all == 0 {
        0.0
    } else {
        correct as f64 / all as f64
    }
}

/// A user's progress (seed 002's UserProgress).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserProgress {
    /// Whose.
    pub user_id: UserId,
    /// Items that reached an interval of a day or more at least once.
    pub total_items_learned: u64,
    /// Sessions completed.
    pub total_sessions_completed: u64,
    /// Time studied, in whole minutes.
    pub total_study_time_minutes: u64,
    /// Consecutive study days up to today or yesterday (in the user's zone), else 0.
    pub current_streak: u32,
    /// Correct answers over all answers.
    pub accuracy_rate: f64,
    /// Items per mastery bucket.
    pub mastery_stats: MasteryStats,
    /// The user's IANA time zone, in which days are counted.
    pub time_zone: &'static str,
    /// The last day with a completed session.
    pub last_study_day: Option<NaiveDate>,
    /// The timestamp of the last event folded in.
    pub last_updated: Option<DateTime<Utc>>,
}

impl UserProgress {
    /// The progress of `user` from stored `state`, as of `now`.
    pub fn from_state(user: UserId, state: &UserState, now: DateTime<Utc>) -> Self {
        let today = state.time_zone.day_of(now);
        let current = state
            .last_study_day
            .is_some_and(|last| last == today || last.succ_opt() == Some(today));
        Self {
            user_id: user,
            total_items_learned: state.items_learned,
            total_sessions_completed: state.sessions_completed,
            total_study_time_minutes: state.study_seconds / 60,
            current_streak: if current { state.streak_days } else { 0 },
            accuracy_rate: accuracy(state.correct_answers, state.wrong_answers),
            mastery_stats: state.mastery,
            time_zone: state.time_zone.name(),
            last_study_day: state.last_study_day,
            last_updated: state.last_event_at,
        }
    }

    /// The progress of a user nothing is known about yet.
    pub fn empty(user: UserId) -> Self {
        Self::from_state(user, &UserState::default(), DateTime::<Utc>::MIN_UTC)
    }
}

/// One user's day (seed 002's DailyStats).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyStats {
    /// Whose.
    pub user_id: UserId,
    /// The day, in the user's zone.
    pub date: NaiveDate,
    /// Sessions completed.
    pub sessions_completed: u64,
    /// Items learned for the first time.
    pub items_learned: u64,
    /// Reviews processed.
    pub items_reviewed: u64,
    /// Time studied, in whole minutes.
    pub study_time_minutes: u64,
    /// Correct answers over all answers of the day.
    pub accuracy_rate: f64,
    /// Items that became mastered.
    pub new_mastery_count: u64,
}

impl DailyStats {
    /// The day from its stored counts.
    pub fn from_counts(user: UserId, date: NaiveDate, c: &DailyCounts) -> Self {
        Self {
            user_id: user,
            date,
            sessions_completed: c.sessions_completed,
            items_learned: c.items_learned,
            items_reviewed: c.items_reviewed,
            study_time_minutes: c.study_seconds / 60,
            accuracy_rate: accuracy(c.correct_answers, c.wrong_answers),
            new_mastery_count: c.new_mastery_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_streak_is_current_through_yesterday() {
        let state = UserState {
            streak_days: 4,
            last_study_day: Some("2026-01-05".parse().unwrap()),
            correct_answers: 3,
            wrong_answers: 1,
            study_seconds: 119,
            ..UserState::default()
        };
        let u = UserId::parse("u").unwrap();
        let p = |now| UserProgress::from_state(u.clone(), &state, at(now));
        assert_eq!(p("2026-01-05T23:00:00Z").current_streak, 4);
        assert_eq!(p("2026-01-06T23:59:00Z").current_streak, 4);
        assert_eq!(p("2026-01-07T00:00:00Z").current_streak, 0);
        let now = p("2026-01-05T12:00:00Z");
        assert_eq!((now.accuracy_rate, now.total_study_time_minutes), (0.75, 1));
        assert_eq!(accuracy(0, 0), 0.0);
        assert_eq!(UserProgress::empty(u).current_streak, 0);
    }
}
