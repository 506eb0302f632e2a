//! `ai.integration.v1.AdminService`.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::convert::{task_to_proto, timestamp};
use crate::api::AppState;
use crate::api::auth::grpc_caller;
use crate::api::error::ApiError;
use crate::api::proto::{self, admin_service_server::AdminService};
use crate::domain::audit::AuditEntry;
use crate::domain::{ErrorClass, PageRequest, TaskId, TaskType};
use crate::service::audit::AuditQuery;
use crate::service::{
    DeadLetter, DeadLetterFilter, QueueStats, QueueView, Selection, ServiceError,
};
use crate::worker::PoolSnapshot;

/// Default window of the averages.
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// The gRPC face of the admin service.
pub struct AdminApi {
    state: AppState,
}

impl AdminApi {
    /// Serves `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl AdminApi {
    async fn set_paused(
        &self,
        request: Request<proto::QueueRequest>,
        paused: bool,
    ) -> Result<Response<proto::QueueState>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let name = request.into_inner().name;
        self.state
            .admin
            .set_queue_paused(&caller, &name, paused)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::QueueState { name, paused }))
    }
}

/// The protobuf form of the statistics; shared with the HTTP route, which serialises it as JSON.
pub fn stats_to_proto(s: QueueStats) -> proto::QueueStats {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    proto::QueueStats {
        pending_count: n(s.tasks.pending),
        processing_count: n(s.tasks.processing),
        completed_count: n(s.tasks.completed),
        failed_count: n(s.tasks.failed),
        cancelled_count: n(s.tasks.cancelled),
        queue_depth: n(s.queue_depth),
        average_wait_time_ms: n(s.tasks.average_wait_ms),
        average_processing_time_ms: n(s.tasks.average_processing_ms),
        sample_size: n(s.tasks.sample_size),
        window_seconds: n(s.window.as_secs()),
        pool: Some(pool_to_proto(s.pool)),
    }
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn pool_to_proto(p: PoolSnapshot) -> proto::WorkerPool {
    proto::WorkerPool {
        limit: count(p.limit as u64),
        min: count(p.min as u64),
        max: count(p.max as u64),
        adaptive: p.adaptive,
        running: count(p.running as u64),
    }
}

fn queue_to_proto(q: QueueView) -> proto::QueueInfo {
    proto::QueueInfo {
        name: q.spec.name.to_string(),
        r#type: q.spec.kind.as_str().to_owned(),
        rate: q.spec.rate.map(|r| r.to_string()).unwrap_or_default(),
        concurrency: count(q.spec.concurrency as u64),
        paused: q.paused,
        pending_count: count(q.tasks.pending),
        processing_count: count(q.tasks.processing),
        completed_count: count(q.tasks.completed),
        failed_count: count(q.tasks.failed),
        cancelled_count: count(q.tasks.cancelled),
        average_wait_time_ms: count(q.tasks.average_wait_ms),
        average_processing_time_ms: count(q.tasks.average_processing_ms),
        sample_size: count(q.tasks.sample_size),
        queue_depth: count(q.depth),
        running: count(q.running as u64),
    }
}

/// A client's window in seconds: 0 means the default; negative is an error.
pub fn window(seconds: i64) -> Result<Duration, ServiceError> {
    match seconds {
        0 => Ok(DEFAULT_WINDOW),
        s if s > 0 => Ok(Duration::from_secs(s as u64)),
        _ => Err(ServiceError::Invalid(
            "window_seconds must not be negative".into(),
        )),
    }
}

/// A dead-letter filter from optional wire strings ("" = any).
pub fn dead_letter_filter(
    task_type: &str,
    error_class: &str,
) -> Result<DeadLetterFilter, ApiError> {
    let task_type = match task_type {
        "" => None,
        t => Some(t.parse::<TaskType>()?),
    };
    let error_class = match error_class {
        "" => None,
        c => Some(ErrorClass::parse(c)?),
    };
    Ok(DeadLetterFilter {
        task_type,
        error_class,
    })
}

/// Which dead letters a requeue or purge applies to: the ids, else the filter; an empty
/// filter needs `all`, so no call empties the queue by accident.
pub fn selection(
    task_ids: &[String],
    task_type: &str,
    error_class: &str,
    all: bool,
) -> Result<Selection, ApiError> {
    if !task_ids.is_empty() {
        let ids = task_ids
            .iter()
            .map(|id| TaskId::parse(id))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Selection::Ids(ids));
    }
    if task_type.is_empty() && error_class.is_empty() && !all {
        return Err(ServiceError::Invalid(
            "give task_ids, a type or error_class filter, or all = true".into(),
        )
        .into());
    }
    Ok(Selection::Matching(dead_letter_filter(
        task_type,
        error_class,
    )?))
}

fn dead_letter_to_proto(d: DeadLetter) -> proto::DeadLetter {
    let history = d
        .history
        .into_iter()
        .map(|e| proto::FailedAttempt {
            event_type: e.kind.as_str().to_owned(),
            error: e.data.get("error").map(|err| proto::TaskError {
                class: err["class"].as_str().unwrap_or_default().to_owned(),
                message: err["message"].as_str().unwrap_or_default().to_owned(),
                provider: err["provider"].as_str().unwrap_or_default().to_owned(),
            }),
            at: Some(timestamp(e.created_at)),
        })
        .collect();
    proto::DeadLetter {
        task: Some(task_to_proto(d.task)),
        history,
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_dead_letters(
        &self,
        request: Request<proto::ListDeadLettersRequest>,
    ) -> Result<Response<proto::ListDeadLettersResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let size = u32::try_from(r.page_size).map_err(|_| {
            ApiError::from(ServiceError::Invalid(
                "page_size must not be negative".into(),
            ))
        })?;
        let page = PageRequest::parse(size, &r.page_token).map_err(ApiError::from)?;
        let filter = dead_letter_filter(&r.r#type, &r.error_class)?;
        let page = self
            .state
            .admin
            .list_dead_letters(&caller, filter, page)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::ListDeadLettersResponse {
            dead_letters: page.items.into_iter().map(dead_letter_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn requeue_dead_letters(
        &self,
        request: Request<proto::DeadLetterSelection>,
    ) -> Result<Response<proto::DeadLetterCount>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let selection = selection(&r.task_ids, &r.r#type, &r.error_class, r.all)?;
        let n = self
            .state
            .admin
            .requeue_dead_letters(&caller, selection)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::DeadLetterCount { count: n as i64 }))
    }

    async fn purge_dead_letters(
        &self,
        request: Request<proto::DeadLetterSelection>,
    ) -> Result<Response<proto::DeadLetterCount>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let selection = selection(&r.task_ids, &r.r#type, &r.error_class, r.all)?;
        let n = self
            .state
            .admin
            .purge_dead_letters(&caller, selection)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::DeadLetterCount { count: n as i64 }))
    }

    async fn list_audit_log(
        &self,
        request: Request<proto::ListAuditLogRequest>,
    ) -> Result<Response<proto::ListAuditLogResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let query = AuditQuery {
            actor: &r.actor,
            action: &r.action,
            from: &r.from,
            to: &r.to,
            cursor: &r.cursor,
            limit: r.limit,
        };
        let page = self
            .state
            .audit
            .list(&caller, query)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::ListAuditLogResponse {
            entries: page.entries.iter().map(audit_entry).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()).unwrap_or_default(),
        }))
    }

    async fn list_queues(
        &self,
        request: Request<proto::ListQueuesRequest>,
    ) -> Result<Response<proto::ListQueuesResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let window = window(request.get_ref().window_seconds).map_err(ApiError::from)?;
        let (queues, pool) = self
            .state
            .admin
            .list_queues(&caller, window)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::ListQueuesResponse {
            queues: queues.into_iter().map(queue_to_proto).collect(),
            pool: Some(pool_to_proto(pool)),
            window_seconds: count(window.as_secs()),
        }))
    }

    async fn pause_queue(
        &self,
        request: Request<proto::QueueRequest>,
    ) -> Result<Response<proto::QueueState>, Status> {
        self.set_paused(request, true).await
    }

    async fn resume_queue(
        &self,
        request: Request<proto::QueueRequest>,
    ) -> Result<Response<proto::QueueState>, Status> {
        self.set_paused(request, false).await
    }

    async fn get_queue_stats(
        &self,
        request: Request<proto::GetQueueStatsRequest>,
    ) -> Result<Response<proto::QueueStats>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let window = window(request.get_ref().window_seconds).map_err(ApiError::from)?;
        let stats = self
            .state
            .admin
            .queue_stats(&caller, window)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(stats_to_proto(stats)))
    }
}

fn audit_entry(e: &AuditEntry) -> proto::AuditEntry {
    proto::AuditEntry {
        id: e.id.to_string(),
        at: Some(timestamp(e.at)),
        actor: e.actor.to_string(),
        action: e.action.as_str().to_owned(),
        target: e.target.clone(),
        result: e.result().to_owned(),
        error: e.error.clone(),
        detail_json: e.detail.to_string(),
        request_id: e.request_id.clone(),
    }
}
