//! `ai.integration.v1.TaskService`.

use tonic::{Request, Response, Status};

use super::convert::{status_from_proto, struct_to_json, task_to_proto};
use crate::api::AppState;
use crate::api::auth::grpc_caller;
use crate::api::error::ApiError;
use crate::api::proto::{self, task_service_server::TaskService};
use crate::auth::Caller;
use crate::domain::{
    NewTask, PageRequest, SubmitPolicy, TaskId, TaskRequest, TaskStatus, TaskType,
};
use crate::service::ServiceError;

/// The gRPC face of the task service.
pub struct TaskApi {
    state: AppState,
}

impl TaskApi {
    /// Serves `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn invalid(msg: impl Into<String>) -> Status {
    ApiError::from(ServiceError::Invalid(msg.into())).into()
}

fn api(e: impl Into<ApiError>) -> Status {
    e.into().into()
}

/// A `SubmitTaskRequest` as a validated domain request owned by `caller`.
pub(crate) fn new_task(
    caller: &Caller,
    r: proto::SubmitTaskRequest,
    policy: &SubmitPolicy,
) -> Result<NewTask, ApiError> {
    let related_entity = match (r.related_entity_type, r.related_entity_id) {
        (None, None) => None,
        (t, i) => Some((t.unwrap_or_default(), i.unwrap_or_default())),
    };
    let request = TaskRequest {
        task_type: r.r#type,
        payload: r
            .payload
            .map(struct_to_json)
            .unwrap_or(serde_json::Value::Null),
        priority: r.priority.map(i64::from),
        idempotency_key: r.idempotency_key,
        related_entity,
        timeout_seconds: r.timeout_seconds,
    };
    Ok(NewTask::parse(&caller.submitter(), request, policy)?)
}

/// A `SubmitTasksRequest` as validated domain requests, in order; an error names the index.
pub(crate) fn new_tasks(
    caller: &Caller,
    r: proto::SubmitTasksRequest,
    policy: &SubmitPolicy,
) -> Result<Vec<NewTask>, Status> {
    r.tasks
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            new_task(caller, r, policy).map_err(|e| match e {
                ApiError::Service(ServiceError::Invalid(m)) => invalid(format!("tasks[{i}]: {m}")),
                other => api(other),
            })
        })
        .collect()
}

/// A `ListTasksRequest`'s page, status filter and type filter.
pub(crate) fn list_filter(
    r: &proto::ListTasksRequest,
) -> Result<(PageRequest, Option<TaskStatus>, Option<TaskType>), Status> {
    let size = u32::try_from(r.page_size).map_err(|_| invalid("page_size must not be negative"))?;
    let page = PageRequest::parse(size, &r.page_token).map_err(api)?;
    let status = proto::TaskStatus::try_from(r.status)
        .map_err(|_| invalid(format!("unknown status {}", r.status)))?;
    let task_type = if r.r#type.is_empty() {
        None
    } else {
        Some(r.r#type.parse().map_err(api)?)
    };
    Ok((page, status_from_proto(status), task_type))
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn submit_task(
        &self,
        request: Request<proto::SubmitTaskRequest>,
    ) -> Result<Response<proto::Task>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let policy = self.state.tasks.policy();
        let new = new_task(&caller, request.into_inner(), policy).map_err(api)?;
        let mut tasks = self.state.tasks.submit(vec![new]).await.map_err(api)?;
        let task = tasks.pop().ok_or_else(|| api(ServiceError::Internal))?;
        Ok(Response::new(task_to_proto(task)))
    }

    async fn submit_tasks(
        &self,
        request: Request<proto::SubmitTasksRequest>,
    ) -> Result<Response<proto::SubmitTasksResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let policy = self.state.tasks.policy();
        let new = new_tasks(&caller, request.into_inner(), policy)?;
        let tasks = self.state.tasks.submit(new).await.map_err(api)?;
        Ok(Response::new(proto::SubmitTasksResponse {
            tasks: tasks.into_iter().map(task_to_proto).collect(),
        }))
    }

    async fn get_task(
        &self,
        request: Request<proto::GetTaskRequest>,
    ) -> Result<Response<proto::Task>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let id = TaskId::parse(&request.get_ref().task_id).map_err(api)?;
        let task = self.state.tasks.get(&caller, id).await.map_err(api)?;
        Ok(Response::new(task_to_proto(task)))
    }

    async fn list_tasks(
        &self,
        request: Request<proto::ListTasksRequest>,
    ) -> Result<Response<proto::ListTasksResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let (page, status, task_type) = list_filter(request.get_ref())?;
        let page = self
            .state
            .tasks
            .list(&caller, status, task_type, page)
            .await
            .map_err(api)?;
        Ok(Response::new(proto::ListTasksResponse {
            tasks: page.items.into_iter().map(task_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    type WatchTaskStream = super::notifications::NotificationStream;

    async fn watch_task(
        &self,
        request: Request<proto::WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        let (caller, exp) = super::notifications::stream_caller(&self.state, &request)?;
        let r = request.into_inner();
        let id = TaskId::parse(&r.task_id).map_err(api)?;
        let req = crate::service::StreamRequest {
            since: r.since,
            task_id: Some(id),
            scope: crate::service::Scope::Own,
            until_terminal: true,
            transport: crate::store::Transport::Grpc,
            expires_at: Some(exp),
        };
        let stream = super::notifications::open(&self.state, &caller, req).await?;
        Ok(Response::new(stream))
    }

    async fn cancel_task(
        &self,
        request: Request<proto::CancelTaskRequest>,
    ) -> Result<Response<proto::Task>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let id = TaskId::parse(&request.get_ref().task_id).map_err(api)?;
        let task = self.state.tasks.cancel(&caller, id).await.map_err(api)?;
        Ok(Response::new(task_to_proto(task)))
    }
}
