//! `ai.integration.v1.ProgressService`: the Progress read models over gRPC.

use chrono::NaiveDate;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use crate::api::AppState;
use crate::api::auth::grpc_caller;
use crate::api::error::ApiError;
use crate::api::proto::{self, progress_service_server::ProgressService};
use crate::auth::Caller;
use crate::domain::UserId;
use crate::domain::progress::{DailyCounts, DailyStats, UserProgress};
use crate::service::ServiceError;

/// The gRPC face of the progress read models.
pub struct ProgressApi {
    state: AppState,
}

impl ProgressApi {
    /// Serves `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn status(e: impl Into<ServiceError>) -> Status {
    ApiError::from(e.into()).into()
}

/// The user asked about: `user_id`, or the caller.
fn subject(caller: &Caller, user_id: Option<String>) -> Result<UserId, Status> {
    match user_id {
        Some(u) => UserId::parse(&u).map_err(status),
        None => Ok(caller.user_id.clone()),
    }
}

/// A `YYYY-MM-DD` date; `None` when empty.
fn date(field: &str, raw: &str) -> Result<Option<NaiveDate>, Status> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        status(ServiceError::Invalid(format!(
            "{field} {raw:?} is not a date (YYYY-MM-DD)"
        )))
    })
}

fn progress_to_proto(p: UserProgress) -> proto::UserProgress {
    proto::UserProgress {
        user_id: p.user_id.to_string(),
        total_items_learned: p.total_items_learned,
        total_sessions_completed: p.total_sessions_completed,
        total_study_time_minutes: p.total_study_time_minutes,
        current_streak: p.current_streak,
        accuracy_rate: p.accuracy_rate,
        mastery_stats: Some(proto::MasteryStats {
            unlearned: p.mastery_stats.unlearned,
            learning: p.mastery_stats.learning,
            short_term_mastered: p.mastery_stats.short_term_mastered,
            long_term_mastered: p.mastery_stats.long_term_mastered,
        }),
        time_zone: p.time_zone.to_owned(),
        last_study_day: p.last_study_day.map(|d| d.to_string()).unwrap_or_default(),
        last_updated: p.last_updated.map(timestamp),
    }
}

fn daily_to_proto(d: DailyStats) -> proto::DailyStats {
    proto::DailyStats {
        user_id: d.user_id.to_string(),
        date: d.date.to_string(),
        sessions_completed: d.sessions_completed,
        items_learned: d.items_learned,
        items_reviewed: d.items_reviewed,
        study_time_minutes: d.study_time_minutes,
        accuracy_rate: d.accuracy_rate,
        new_mastery_count: d.new_mastery_count,
    }
}

#[tonic::async_trait]
impl ProgressService for ProgressApi {
    async fn get_user_progress(
        &self,
        request: Request<proto::GetUserProgressRequest>,
    ) -> Result<Response<proto::UserProgress>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let user = subject(&caller, request.into_inner().user_id)?;
        let p = self
            .state
            .progress
            .user_progress(&caller, &user)
            .await
            .map_err(status)?;
        Ok(Response::new(progress_to_proto(p)))
    }

    async fn get_daily_stats(
        &self,
        request: Request<proto::GetDailyStatsRequest>,
    ) -> Result<Response<proto::DailyStats>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let user = subject(&caller, r.user_id)?;
        let day = date("date", &r.date)?
            .ok_or_else(|| status(ServiceError::Invalid("date is required".into())))?;
        let days = self
            .state
            .progress
            .daily_stats(&caller, &user, Some(day), Some(day))
            .await
            .map_err(status)?;
        let d = days
            .into_iter()
            .next()
            .unwrap_or_else(|| DailyStats::from_counts(user, day, &DailyCounts::default()));
        Ok(Response::new(daily_to_proto(d)))
    }

    async fn get_stats_range(
        &self,
        request: Request<proto::GetStatsRangeRequest>,
    ) -> Result<Response<proto::StatsRange>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let user = subject(&caller, r.user_id)?;
        let days = self
            .state
            .progress
            .daily_stats(&caller, &user, date("from", &r.from)?, date("to", &r.to)?)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::StatsRange {
            days: days.into_iter().map(daily_to_proto).collect(),
        }))
    }
}
