//! `ai.integration.v1.PipelineService`: pipeline definitions and sessions over gRPC, the same
//! calls as the HTTP routes in `api/http/pipelines.rs`.

use serde_json::Value;
use tonic::{Request, Response, Status};

use super::convert::{json_to_value, timestamp, value_to_json};
use crate::api::AppState;
use crate::api::auth::grpc_caller;
use crate::api::error::ApiError;
use crate::api::proto::{self, pipeline_service_server::PipelineService};
use crate::domain::{PageRequest, TaskId};
use crate::service::ServiceError;
use crate::store::pipeline::{ItemRecord, SessionRecord};

/// Items per page of `GetSession` unless `page_size` says.
const DEFAULT_ITEMS_PAGE: u32 = 100;

/// The gRPC face of pipelines.
pub struct PipelineApi {
    state: AppState,
}

impl PipelineApi {
    /// Serves `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn status(e: impl Into<ServiceError>) -> Status {
    ApiError::from(e.into()).into()
}

fn session_id(raw: &str) -> Result<TaskId, Status> {
    TaskId::parse(raw).map_err(|_| {
        status(ServiceError::Invalid(format!(
            "session_id {raw:?} is not a pipeline session id (a UUID)"
        )))
    })
}

fn items(values: Vec<prost_types::Value>) -> Vec<Value> {
    values.into_iter().map(value_to_json).collect()
}

fn session_to_proto(s: &SessionRecord) -> proto::PipelineSession {
    proto::PipelineSession {
        session_id: s.id.to_string(),
        pipeline: s.definition.name.clone(),
        status: s.status.to_string(),
        item_count: s.item_count,
        error: s.error.clone().unwrap_or_default(),
        created_at: Some(timestamp(s.created_at)),
        updated_at: Some(timestamp(s.updated_at)),
        finished_at: s.finished_at.map(timestamp),
        items: Vec::new(),
        next_page_token: String::new(),
    }
}

fn item_to_proto(i: ItemRecord) -> proto::PipelineItem {
    proto::PipelineItem {
        id: i.id,
        position: i.position,
        status: i.status.to_string(),
        data: Some(json_to_value(i.data)),
        stages: i
            .stages
            .into_iter()
            .map(|s| {
                let state = proto::StageState {
                    status: s.status.to_string(),
                    result: s.result.map(json_to_value),
                    error: s.error.unwrap_or_default(),
                    task_id: s.task_id.map(|t| t.to_string()).unwrap_or_default(),
                };
                (s.stage, state)
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl PipelineService for PipelineApi {
    async fn list_pipelines(
        &self,
        request: Request<proto::ListPipelinesRequest>,
    ) -> Result<Response<proto::ListPipelinesResponse>, Status> {
        grpc_caller(&self.state.keys, &request)?;
        let pipelines = self
            .state
            .pipelines
            .definitions()
            .into_iter()
            .map(|d| json_to_value(serde_json::to_value(d).unwrap_or(Value::Null)))
            .collect();
        Ok(Response::new(proto::ListPipelinesResponse { pipelines }))
    }

    async fn create_session(
        &self,
        request: Request<proto::CreateSessionRequest>,
    ) -> Result<Response<proto::PipelineSession>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let req = request.into_inner();
        let session = self
            .state
            .pipelines
            .create(&caller, &req.pipeline, items(req.items))
            .await
            .map_err(status)?;
        Ok(Response::new(session_to_proto(&session)))
    }

    async fn add_items(
        &self,
        request: Request<proto::AddItemsRequest>,
    ) -> Result<Response<proto::AddItemsResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let req = request.into_inner();
        let id = session_id(&req.session_id)?;
        let item_count = self
            .state
            .pipelines
            .add_items(&caller, id, items(req.items))
            .await
            .map_err(status)?;
        Ok(Response::new(proto::AddItemsResponse {
            session_id: id.to_string(),
            item_count,
        }))
    }

    async fn get_session(
        &self,
        request: Request<proto::GetPipelineSessionRequest>,
    ) -> Result<Response<proto::PipelineSession>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let req = request.into_inner();
        let id = session_id(&req.session_id)?;
        let after = match req.page_token.as_str() {
            "" => None,
            t => Some(t.parse::<u64>().map_err(|_| {
                status(ServiceError::Invalid(
                    "page_token is not one this server issued".into(),
                ))
            })?),
        };
        let limit = match req.page_size {
            0 => DEFAULT_ITEMS_PAGE,
            n => n,
        };
        let view = self
            .state
            .pipelines
            .get(&caller, id, after, limit)
            .await
            .map_err(status)?;
        let mut out = session_to_proto(&view.session);
        out.items = view.items.into_iter().map(item_to_proto).collect();
        out.next_page_token = view.next_after.map(|p| p.to_string()).unwrap_or_default();
        Ok(Response::new(out))
    }

    async fn list_sessions(
        &self,
        request: Request<proto::ListPipelineSessionsRequest>,
    ) -> Result<Response<proto::ListPipelineSessionsResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page_size, &req.page_token).map_err(status)?;
        let page = self
            .state
            .pipelines
            .list(&caller, page)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ListPipelineSessionsResponse {
            sessions: page.items.iter().map(session_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn cancel_session(
        &self,
        request: Request<proto::CancelSessionRequest>,
    ) -> Result<Response<proto::PipelineSession>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let id = session_id(&request.get_ref().session_id)?;
        let session = self
            .state
            .pipelines
            .cancel(&caller, id)
            .await
            .map_err(status)?;
        Ok(Response::new(session_to_proto(&session)))
    }
}
