//! The gRPC half of the authorisation matrix: one row per method of every service in the
//! descriptor set the server serves (a method without a row fails), called as raw bytes so
//! one table covers every service. Expectations as in `authz_matrix.rs`: UNAUTHENTICATED
//! without a token, NOT_FOUND for alice's things and PERMISSION_DENIED for admin calls and
//! alice's data by user id when bob calls, and the allowed caller let through.

use std::collections::BTreeSet;
use std::time::Duration;

use ai_integration_service::api::proto::{self as pb, FILE_DESCRIPTOR_SET};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::authz_matrix::{Access, Fixture};
use crate::helpers::TestApp;
use crate::pipeline_grpc::item;

/// Passes bytes through: the request is encoded by its own type, the answer only searched.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

pub struct GrpcRow {
    pub method: &'static str,
    access: Access,
    message: Vec<u8>,
    streaming: bool,
}

fn unary(method: &'static str, access: Access, message: impl Message) -> GrpcRow {
    GrpcRow {
        method,
        access,
        message: message.encode_to_vec(),
        streaming: false,
    }
}

fn stream(method: &'static str, access: Access, message: impl Message) -> GrpcRow {
    GrpcRow {
        streaming: true,
        ..unary(method, access, message)
    }
}

fn alice() -> String {
    "alice".to_owned()
}

/// Every row, with alice's ids filled in.
#[rustfmt::skip]
pub fn rows(fx: &Fixture) -> Vec<GrpcRow> {
    use Access::*;
    let task = || fx.task.clone();
    let echo = || pb::SubmitTaskRequest {
        r#type: "echo".into(),
        payload: Some(Default::default()),
        ..Default::default()
    };
    vec![
        unary("ai.integration.v1.AdminService/GetQueueStats", Admin, pb::GetQueueStatsRequest::default()),
        unary("ai.integration.v1.AdminService/ListDeadLetters", Admin, pb::ListDeadLettersRequest::default()),
        unary("ai.integration.v1.AdminService/RequeueDeadLetters", Admin, pb::DeadLetterSelection { all: true, ..Default::default() }),
        unary("ai.integration.v1.AdminService/PurgeDeadLetters", Admin, pb::DeadLetterSelection { all: true, ..Default::default() }),
        unary("ai.integration.v1.AdminService/ListQueues", Admin, pb::ListQueuesRequest::default()),
        unary("ai.integration.v1.AdminService/PauseQueue", Admin, pb::QueueRequest { name: "default".into() }),
        unary("ai.integration.v1.AdminService/ResumeQueue", Admin, pb::QueueRequest { name: "default".into() }),
        unary("ai.integration.v1.AdminService/ListAuditLog", Admin, pb::ListAuditLogRequest::default()),
        unary("ai.integration.v1.ChatService/StartSession", Own, pb::StartSessionRequest { item_id: "matrix".into(), context: None }),
        unary("ai.integration.v1.ChatService/SendMessage", Owned, pb::SendMessageRequest { session_id: fx.chat.clone(), content: "hi".into(), idempotency_key: String::new() }),
        unary("ai.integration.v1.ChatService/GetSession", Owned, pb::GetSessionRequest { session_id: fx.chat.clone(), ..Default::default() }),
        unary("ai.integration.v1.ChatService/ListSessions", Own, pb::ListSessionsRequest::default()),
        unary("ai.integration.v1.ChatService/CloseSession", Owned, pb::CloseSessionRequest { session_id: fx.chat.clone() }),
        unary("ai.integration.v1.EventStoreService/Append", Backend, pb::AppendRequest {
            stream_id: "matrix-grpc".into(),
            expected_version: None,
            events: vec![pb::NewEvent { r#type: "Tested".into(), ..Default::default() }],
        }),
        unary("ai.integration.v1.EventStoreService/ReadStream", Backend, pb::ReadStreamRequest { stream_id: "matrix-grpc".into(), ..Default::default() }),
        unary("ai.integration.v1.EventStoreService/ReadAll", Backend, pb::ReadAllRequest::default()),
        unary("ai.integration.v1.EventStoreService/ReadByType", Backend, pb::ReadByTypeRequest { r#type: "Tested".into(), ..Default::default() }),
        stream("ai.integration.v1.EventStoreService/SubscribeAll", Backend, pb::SubscribeAllRequest::default()),
        stream("ai.integration.v1.NotificationService/Subscribe", Own, pb::SubscribeRequest::default()),
        stream("ai.integration.v1.NotificationService/Subscribe", Owned, pb::SubscribeRequest { task_id: Some(task()), ..Default::default() }),
        stream("ai.integration.v1.NotificationService/Subscribe", Owned, pb::SubscribeRequest { session_id: Some(fx.pipeline.clone()), ..Default::default() }),
        stream("ai.integration.v1.NotificationService/Subscribe", Admin, pb::SubscribeRequest { user_id: Some(alice()), ..Default::default() }),
        stream("ai.integration.v1.NotificationService/Subscribe", Admin, pb::SubscribeRequest { all_users: true, ..Default::default() }),
        unary("ai.integration.v1.PipelineService/ListPipelines", Own, pb::ListPipelinesRequest::default()),
        unary("ai.integration.v1.PipelineService/CreateSession", Own, pb::CreateSessionRequest { pipeline: "menu".into(), items: vec![item("m", "n")] }),
        unary("ai.integration.v1.PipelineService/AddItems", Owned, pb::AddItemsRequest { session_id: fx.pipeline.clone(), items: vec![item("g2", "n")] }),
        unary("ai.integration.v1.PipelineService/GetSession", Owned, pb::GetPipelineSessionRequest { session_id: fx.pipeline.clone(), ..Default::default() }),
        unary("ai.integration.v1.PipelineService/ListSessions", Own, pb::ListPipelineSessionsRequest::default()),
        unary("ai.integration.v1.PipelineService/CancelSession", Owned, pb::CancelSessionRequest { session_id: fx.pipeline.clone() }),
        unary("ai.integration.v1.ProgressService/GetUserProgress", Own, pb::GetUserProgressRequest::default()),
        unary("ai.integration.v1.ProgressService/GetUserProgress", OtherUser, pb::GetUserProgressRequest { user_id: Some(alice()) }),
        unary("ai.integration.v1.ProgressService/GetDailyStats", OtherUser, pb::GetDailyStatsRequest { user_id: Some(alice()), date: chrono::Utc::now().date_naive().to_string() }),
        unary("ai.integration.v1.ProgressService/GetStatsRange", OtherUser, pb::GetStatsRangeRequest { user_id: Some(alice()), ..Default::default() }),
        unary("ai.integration.v1.ProviderService/GetProviderHealth", Admin, pb::GetProviderHealthRequest::default()),
        unary("ai.integration.v1.ProviderService/ResetCircuitBreaker", Admin, pb::ResetCircuitBreakerRequest { provider: "compat".into() }),
        unary("ai.integration.v1.ProviderService/SetProviderDisabled", Admin, pb::SetProviderDisabledRequest { provider: "compat".into(), disabled: false }),
        unary("ai.integration.v1.ProviderService/GetUsage", Own, pb::GetUsageRequest::default()),
        unary("ai.integration.v1.ProviderService/GetUsage", OtherUser, pb::GetUsageRequest { user_id: alice(), ..Default::default() }),
        unary("ai.integration.v1.ProviderService/GetUsage", Admin, pb::GetUsageRequest { all_users: true, ..Default::default() }),
        unary("ai.integration.v1.ProviderService/GetBudget", Own, pb::GetBudgetRequest::default()),
        unary("ai.integration.v1.ProviderService/GetBudget", OtherUser, pb::GetBudgetRequest { user_id: alice() }),
        unary("ai.integration.v1.ProviderService/SetBudget", Admin, pb::SetBudgetRequest { user_id: alice(), monthly_micros: Some(5_000_000) }),
        unary("ai.integration.v1.ProviderService/ListTaskAttempts", Owned, pb::ListTaskAttemptsRequest { task_id: task() }),
        unary("ai.integration.v1.TaskService/SubmitTask", Own, echo()),
        unary("ai.integration.v1.TaskService/SubmitTasks", Own, pb::SubmitTasksRequest { tasks: vec![echo()] }),
        unary("ai.integration.v1.TaskService/GetTask", Owned, pb::GetTaskRequest { task_id: task() }),
        unary("ai.integration.v1.TaskService/ListTasks", Own, pb::ListTasksRequest::default()),
        stream("ai.integration.v1.TaskService/WatchTask", Owned, pb::WatchTaskRequest { task_id: task(), since: None }),
        unary("ai.integration.v1.TaskService/CancelTask", Owned, pb::CancelTaskRequest { task_id: task() }),
    ]
}

/// `package.Service/Method` of every method the served descriptor set holds.
fn served_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let mut out = BTreeSet::new();
    for file in set.file {
        for service in &file.service {
            for method in &service.method {
                out.insert(format!(
                    "{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    out
}

#[test]
fn every_grpc_method_has_a_row_and_every_row_a_method() {
    let fx = Fixture::placeholder();
    let served = served_methods();
    assert!(served.len() > 40, "{served:?}");
    let rows: BTreeSet<String> = rows(&fx).iter().map(|r| r.method.to_owned()).collect();
    let missing: Vec<_> = served.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&served).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "methods without a row: {missing:?}; rows without a method: {stale:?}"
    );
}

/// One call; a stream answers with its first message, or nothing when open and quiet.
async fn call(channel: &Channel, row: &GrpcRow, token: Option<&str>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = Request::new(row.message.clone());
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let path = PathAndQuery::try_from(format!("/{}", row.method)).unwrap();
    if !row.streaming {
        return grpc.unary(request, path, Raw).await.map(|r| r.into_inner());
    }
    let mut stream = grpc
        .server_streaming(request, path, Raw)
        .await?
        .into_inner();
    match tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
        Ok(first) => first.map(Option::unwrap_or_default),
        Err(_) => Ok(Vec::new()),
    }
}

fn code_of(outcome: &Result<Vec<u8>, Status>) -> Code {
    outcome.as_ref().map_or_else(Status::code, |_| Code::Ok)
}

/// The tokens a row is called with.
pub struct Callers<'a> {
    pub alice: &'a str,
    pub bob: &'a str,
    pub admin: &'a str,
    pub service: &'a str,
}

/// Every gRPC row checked; what went wrong, one line each.
pub async fn failures(app: &TestApp, fx: &Fixture, who: &Callers<'_>) -> Vec<String> {
    let channel = Channel::from_shared(app.base.clone())
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects");
    let mut failures = Vec::new();
    for row in rows(fx) {
        let what = format!("{} ({:?})", row.method, row.access);
        let anon = code_of(&call(&channel, &row, None).await);
        if anon != Code::Unauthenticated {
            failures.push(format!("{what}: anonymous got {anon:?}"));
        }
        let as_bob = call(&channel, &row, Some(who.bob)).await;
        let expected = match row.access {
            Access::Public | Access::Own => None,
            Access::Owned => Some(Code::NotFound),
            Access::OtherUser | Access::Admin | Access::Backend => Some(Code::PermissionDenied),
        };
        match (expected, &as_bob) {
            (Some(code), _) if code_of(&as_bob) != code => failures.push(format!(
                "{what}: bob got {:?}, not {code:?}",
                code_of(&as_bob)
            )),
            (None, Err(status)) if refused(status.code()) => {
                failures.push(format!("{what}: bob refused on his own data: {status:?}"))
            }
            (None, Ok(bytes)) => {
                if let Some(id) = fx.ids().into_iter().find(|id| contains(bytes, id)) {
                    failures.push(format!("{what}: bob saw alice's {id}"));
                }
            }
            _ => {}
        }
        let allowed = match row.access {
            Access::Public | Access::Own => None,
            Access::Owned | Access::OtherUser => Some(who.alice),
            Access::Admin => Some(who.admin),
            Access::Backend => Some(who.service),
        };
        if let Some(token) = allowed
            && let Err(status) = call(&channel, &row, Some(token)).await
            && refused(status.code())
        {
            failures.push(format!("{what}: the allowed caller got {status:?}"));
        }
    }
    failures
}

/// Refusals and server faults; a validation error of an allowed call is neither.
fn refused(code: Code) -> bool {
    matches!(
        code,
        Code::Unauthenticated
            | Code::PermissionDenied
            | Code::NotFound
            | Code::Internal
            | Code::Unknown
    )
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
