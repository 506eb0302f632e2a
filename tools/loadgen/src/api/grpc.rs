//! The gRPC client: `TaskService` over a few HTTP/2 connections, used round-robin.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ai_integration_service::api::proto::task_service_client::TaskServiceClient;
use ai_integration_service::api::proto::{
    GetTaskRequest, ListTasksRequest, SubmitTaskRequest, SubmitTasksRequest,
};
use anyhow::Context;
use chrono::DateTime;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::{LIST_PAGE_SIZE, ListPage, ListStatus, REQUEST_TIMEOUT, TaskInfo};
use crate::credentials::Credentials;
use crate::errors::CallError;
use crate::workload::Workload;

/// gRPC: a few HTTP/2 connections, used round-robin.
pub struct GrpcApi {
    channels: Vec<Channel>,
    next: AtomicUsize,
    /// `authorization` values: one per submitting user.
    submit_auth: Vec<MetadataValue<Ascii>>,
    /// `authorization` for lists and reads.
    read_auth: MetadataValue<Ascii>,
}

impl GrpcApi {
    /// Opens `connections` HTTP/2 connections to `base`.
    pub async fn connect(
        base: String,
        connections: usize,
        credentials: &Credentials,
    ) -> anyhow::Result<Self> {
        let metadata = |token: &str| {
            MetadataValue::try_from(format!("Bearer {token}"))
                .context("token is not valid gRPC metadata")
        };
        let submit_auth = credentials
            .submit
            .iter()
            .map(|t| metadata(t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let read_auth = metadata(&credentials.read)?;
        let endpoint = Endpoint::from_shared(base.clone())
            .with_context(|| format!("bad --url {base:?}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT);
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            // Each `connect` opens its own HTTP/2 connection.
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to {base} (gRPC)"))?;
            channels.push(channel);
        }
        Ok(Self {
            channels,
            next: AtomicUsize::new(0),
            submit_auth,
            read_auth,
        })
    }

    /// Submits tasks `first..first + count` as user `user`: one `SubmitTask`, or one
    /// `SubmitTasks` when `batched`.
    pub async fn submit(
        &self,
        user: usize,
        first: usize,
        count: usize,
        batched: bool,
        work: &Workload,
    ) -> Result<Vec<String>, CallError> {
        let one = |k: usize| SubmitTaskRequest {
            r#type: work.task_type.clone(),
            payload: Some(work.payload_struct(k)),
            ..Default::default()
        };
        if batched {
            let req = SubmitTasksRequest {
                tasks: (first..first + count).map(one).collect(),
            };
            let resp = self
                .client()
                .submit_tasks(self.request_as(self.submit_auth(user), req))
                .await
                .map_err(|s| CallError::grpc(&s))?;
            Ok(resp
                .into_inner()
                .tasks
                .into_iter()
                .map(|t| t.task_id)
                .collect())
        } else {
            let resp = self
                .client()
                .submit_task(self.request_as(self.submit_auth(user), one(first)))
                .await
                .map_err(|s| CallError::grpc(&s))?;
            Ok(vec![resp.into_inner().task_id])
        }
    }

    /// `GetTask` for `id`.
    pub async fn get(&self, id: &str) -> Result<(), CallError> {
        let req = GetTaskRequest {
            task_id: id.to_owned(),
        };
        self.client()
            .get_task(self.request(req))
            .await
            .map_err(|s| CallError::grpc(&s))?;
        Ok(())
    }

    /// One `ListTasks` page of the caller's tasks with `status`.
    pub async fn list(&self, status: ListStatus, page_token: &str) -> Result<ListPage, CallError> {
        let req = ListTasksRequest {
            page_size: LIST_PAGE_SIZE as i32,
            page_token: page_token.to_owned(),
            status: status.to_proto() as i32,
            r#type: String::new(),
        };
        let page = self
            .client()
            .list_tasks(self.request(req))
            .await
            .map_err(|s| CallError::grpc(&s))?
            .into_inner();
        Ok(ListPage {
            tasks: page
                .tasks
                .into_iter()
                .map(|t| TaskInfo {
                    id: t.task_id,
                    completed_at: t.completed_at.and_then(|ts| {
                        DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
                    }),
                })
                .collect(),
            next_page_token: page.next_page_token,
        })
    }

    /// A client on the next connection in turn.
    fn client(&self) -> TaskServiceClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        TaskServiceClient::new(self.channels[i].clone()).max_decoding_message_size(64 << 20)
    }

    /// The `authorization` value of submitting user `user`.
    fn submit_auth(&self, user: usize) -> &MetadataValue<Ascii> {
        &self.submit_auth[user % self.submit_auth.len()]
    }

    /// `message` with the read token attached.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.request_as(&self.read_auth, message)
    }

    /// `message` with `auth` attached.
    fn request_as<T>(&self, auth: &MetadataValue<Ascii>, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.metadata_mut().insert("authorization", auth.clone());
        req
    }
}
