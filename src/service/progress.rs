//! The Progress read models as users and admins read them: UserProgress, DailyStats and task
//! statistics. Users read their own; admins and service accounts anyone's.

use std::sync::Arc;

use chrono::{NaiveDate, TimeDelta};

use super::ServiceError;
use crate::auth::Caller;
use crate::clock;
use crate::domain::UserId;
use crate::domain::progress::{DailyStats, TaskStatsKey, TaskStatsRow, UserProgress};
use crate::store::progress::ProgressReads;

/// Longest range of days one call returns.
pub const MAX_RANGE_DAYS: i64 = 366;

/// A range of days when the caller gives none: the last 30, to today (UTC).
const DEFAULT_RANGE_DAYS: i64 = 30;

/// Reads of the read models.
#[derive(Clone)]
pub struct ProgressService {
    reads: Arc<dyn ProgressReads>,
}

fn may_read(caller: &Caller, user: &UserId) -> Result<(), ServiceError> {
    if &caller.user_id == user || caller.role.is_trusted_backend() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "users read only their own progress".into(),
        ))
    }
}

/// `from..=to`, checked; `to` defaults to `today`, `from` to 29 days before `to`.
pub fn day_range(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), ServiceError> {
    let to = to.unwrap_or(today);
    let from = from.unwrap_or(to - TimeDelta::days(DEFAULT_RANGE_DAYS - 1));
    if from > to {
        return Err(ServiceError::Invalid(format!(
            "from {from} is after to {to}"
        )));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(ServiceError::Invalid(format!(
            "a range covers at most {MAX_RANGE_DAYS} days"
        )));
    }
    Ok((from, to))
}

impl ProgressService {
    /// Reads over `reads`.
    pub fn new(reads: Arc<dyn ProgressReads>) -> Self {
        Self { reads }
    }

    /// `user`'s progress now (all zeros when nothing is known of them yet).
    pub async fn user_progress(
        &self,
        caller: &Caller,
        user: &UserId,
    ) -> Result<UserProgress, ServiceError> {
        may_read(caller, user)?;
        Ok(match self.reads.user_progress(user).await? {
            Some(state) => UserProgress::from_state(user.clone(), &state, clock::now()),
            None => UserProgress::empty(user.clone()),
        })
    }

    /// `user`'s days with activity from `from` to `to` (both included; days in the user's
    /// zone, `to` by default their today).
    pub async fn daily_stats(
        &self,
        caller: &Caller,
        user: &UserId,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<DailyStats>, ServiceError> {
        may_read(caller, user)?;
        let today = match to {
            Some(to) => to,
            None => {
                let zone = self.reads.user_progress(user).await?.map(|s| s.time_zone);
                zone.unwrap_or_default().day_of(clock::now())
            }
        };
        let (from, to) = day_range(from, to, today)?;
        let days = self.reads.daily_stats(user, from, to).await?;
        Ok(days
            .iter()
            .map(|(d, c)| DailyStats::from_counts(user.clone(), *d, c))
            .collect())
    }

    /// `user`'s task statistics from `from` to `to` (UTC days, both included).
    pub async fn task_stats(
        &self,
        caller: &Caller,
        user: &UserId,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<(TaskStatsKey, TaskStatsRow)>, ServiceError> {
        may_read(caller, user)?;
        let (from, to) = day_range(from, to, clock::now().date_naive())?;
        Ok(self.reads.task_stats(user, from, to).await?)
    }
}
