//! The two APIs behind one interface: submit, read and list tasks over gRPC or HTTP/JSON.

mod grpc;
mod http;

use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::api::proto;
use chrono::{DateTime, Utc};

use crate::args::{Args, Protocol};
use crate::credentials::Credentials;
use crate::errors::CallError;
use crate::workload::Workload;
use grpc::GrpcApi;
use http::HttpApi;

/// Per-call timeout for every request the load generator sends.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest page the list API serves.
const LIST_PAGE_SIZE: u32 = 1000;

/// A client of either API. Cheap to clone: clones share connections.
#[derive(Clone)]
pub enum Api {
    /// `TaskService` over a few HTTP/2 connections.
    Grpc(Arc<GrpcApi>),
    /// The JSON API over one pooled client.
    Http(Arc<HttpApi>),
}

/// One task as the list and submit calls return it: just what the load generator needs.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// The task's id.
    pub id: String,
    /// When the worker finished it, if it has.
    pub completed_at: Option<DateTime<Utc>>,
}

/// One page of a listing.
pub struct ListPage {
    /// The page's tasks, newest-created first.
    pub tasks: Vec<TaskInfo>,
    /// Where the next page starts; empty on the last.
    pub next_page_token: String,
}

/// A task status to list by.
#[derive(Debug, Clone, Copy)]
pub enum ListStatus {
    /// Tasks that completed.
    Completed,
    /// Tasks that failed (counted when the wait times out).
    Failed,
}

impl ListStatus {
    /// The status as the HTTP API's `status=` spells it.
    fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// The status as the gRPC API's enum.
    fn to_proto(self) -> proto::TaskStatus {
        match self {
            Self::Completed => proto::TaskStatus::Completed,
            Self::Failed => proto::TaskStatus::Failed,
        }
    }
}

impl Api {
    /// Connects to the service over the chosen protocol.
    pub async fn connect(args: &Args, credentials: &Credentials) -> anyhow::Result<Self> {
        let base = args.url.trim_end_matches('/').to_owned();
        Ok(match args.protocol {
            Protocol::Grpc => Self::Grpc(Arc::new(
                GrpcApi::connect(base, args.connections, credentials).await?,
            )),
            Protocol::Http => Self::Http(Arc::new(HttpApi::connect(
                base,
                args.concurrency,
                credentials,
            )?)),
        })
    }

    /// Submits tasks `first..first + count` in one call as submitting user `user` and returns
    /// their ids in order.
    pub async fn submit(
        &self,
        user: usize,
        first: usize,
        count: usize,
        batched: bool,
        work: &Workload,
    ) -> Result<Vec<String>, CallError> {
        let ids = match self {
            Self::Grpc(g) => g.submit(user, first, count, batched, work).await?,
            Self::Http(h) => h.submit(user, first, count, batched, work).await?,
        };
        if ids.len() != count {
            return Err(CallError::new(
                "bad response",
                format!("sent {count} tasks, got {} back", ids.len()),
            ));
        }
        Ok(ids)
    }

    /// Reads one task.
    pub async fn get(&self, id: &str) -> Result<(), CallError> {
        match self {
            Self::Grpc(g) => g.get(id).await,
            Self::Http(h) => h.get(id).await,
        }
    }

    /// One page of the caller's tasks with `status`.
    pub async fn list(&self, status: ListStatus, page_token: &str) -> Result<ListPage, CallError> {
        match self {
            Self::Grpc(g) => g.list(status, page_token).await,
            Self::Http(h) => h.list(status, page_token).await,
        }
    }
}
