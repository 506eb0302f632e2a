//! `ai.integration.v1.NotificationService`, and the stream shape `TaskService.WatchTask`
//! shares with it.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::convert::{json_to_value, timestamp};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::proto::{self, notification_service_server::NotificationService};
use crate::auth::Caller;
use crate::domain::{TaskId, UserId};
use crate::service::{CloseReason, EventStream, Scope, ServiceError, StreamItem, StreamRequest};
use crate::store::Transport;

/// A server stream of notifications.
pub type NotificationStream =
    Pin<Box<dyn Stream<Item = Result<proto::Notification, Status>> + Send + 'static>>;

/// The gRPC face of the notification service.
pub struct NotificationApi {
    state: AppState,
}

impl NotificationApi {
    /// Serves `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The caller and token expiry of a streaming request.
pub fn stream_caller<T>(state: &AppState, request: &Request<T>) -> Result<(Caller, u64), Status> {
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let token = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .ok_or(crate::auth::AuthError::Missing)
        .map_err(|e| Status::from(ApiError::from(e)))?;
    state
        .keys
        .verify_with_expiry(token.trim())
        .map_err(|e| ApiError::from(e).into())
}

/// Opens `req` for `caller` and turns it into a gRPC stream.
pub async fn open(
    state: &AppState,
    caller: &Caller,
    req: StreamRequest,
) -> Result<NotificationStream, Status> {
    let stream = state
        .notifications
        .open(caller, req, None)
        .await
        .map_err(|e| Status::from(ApiError::from(e)))?;
    Ok(to_grpc(stream))
}

/// An opened event stream as gRPC notifications.
fn to_grpc(stream: EventStream) -> NotificationStream {
    Box::pin(futures::stream::unfold(
        Some(stream),
        |s: Option<EventStream>| async move {
            let mut s = s?;
            let item = s.next().await?;
            Some(match item {
                StreamItem::Subscribed { recovered, last } => (
                    Ok(notification(proto::notification::Kind::Subscribed(
                        proto::Subscribed {
                            recovered,
                            last_id: last,
                        },
                    ))),
                    Some(s),
                ),
                StreamItem::Event(e) => {
                    let data = if crate::api::http::events::event_json(&e).len()
                        > crate::domain::MAX_EVENT_BYTES
                    {
                        serde_json::json!({"omitted": "event larger than 1 MiB; fetch the task"})
                    } else {
                        e.event.data.clone()
                    };
                    let event = proto::TaskNotification {
                        id: e.id,
                        task_id: e.event.task_id.to_string(),
                        user_id: e.event.user_id.to_string(),
                        r#type: e.event.kind.as_str().to_owned(),
                        data: Some(json_to_value(data)),
                        created_at: Some(timestamp(e.event.created_at)),
                    };
                    (
                        Ok(notification(proto::notification::Kind::Event(event))),
                        Some(s),
                    )
                }
                StreamItem::Closed(CloseReason::TaskFinished) => return None,
                StreamItem::Closed(reason) => (Err(close_status(reason)), None),
            })
        },
    ))
}

fn notification(kind: proto::notification::Kind) -> proto::Notification {
    proto::Notification { kind: Some(kind) }
}

fn close_status(reason: CloseReason) -> Status {
    let msg = reason.message();
    match reason {
        CloseReason::SlowConsumer => Status::resource_exhausted(msg),
        CloseReason::TokenExpired => Status::unauthenticated(msg),
        CloseReason::ShuttingDown | CloseReason::Unavailable => Status::unavailable(msg),
        CloseReason::TaskFinished => Status::ok(msg),
    }
}

fn invalid(msg: impl Into<String>) -> Status {
    ApiError::from(ServiceError::Invalid(msg.into())).into()
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    type SubscribeStream = NotificationStream;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let (caller, exp) = stream_caller(&self.state, &request)?;
        let r = request.into_inner();
        if let Some(raw) = r.session_id.as_deref() {
            if r.task_id.is_some() || r.user_id.is_some() || r.all_users {
                return Err(invalid(
                    "session_id is not combined with task_id, user_id or all_users",
                ));
            }
            let id = TaskId::parse(raw).map_err(|_| {
                invalid(format!(
                    "session_id {raw:?} is not a pipeline session id (a UUID)"
                ))
            })?;
            let stream = self
                .state
                .pipelines
                .events(&caller, id, r.since, Transport::Grpc, Some(exp))
                .await
                .map_err(|e| Status::from(ApiError::from(e)))?;
            return Ok(Response::new(to_grpc(stream)));
        }
        let task_id = r
            .task_id
            .as_deref()
            .map(TaskId::parse)
            .transpose()
            .map_err(|e| Status::from(ApiError::from(e)))?;
        let scope = match (r.user_id, r.all_users) {
            (Some(_), true) => return Err(invalid("give either user_id or all_users, not both")),
            (Some(u), false) => {
                Scope::User(UserId::parse(&u).map_err(|e| Status::from(ApiError::from(e)))?)
            }
            (None, true) => Scope::All,
            (None, false) => Scope::Own,
        };
        let req = StreamRequest {
            since: r.since,
            task_id,
            scope,
            until_terminal: false,
            transport: Transport::Grpc,
            expires_at: Some(exp),
        };
        Ok(Response::new(open(&self.state, &caller, req).await?))
    }
}
