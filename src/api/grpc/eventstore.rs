//! `ai.integration.v1.EventStoreService`: the HTTP event store's calls over gRPC, with
//! `SubscribeAll` as a server stream.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert::{from_timestamp, json_to_value, timestamp, value_to_json};
use crate::api::AppState;
use crate::api::auth::grpc_caller;
use crate::api::error::ApiError;
use crate::api::proto::{self, event_store_service_server::EventStoreService};
use crate::domain::UserId;
use crate::domain::eventstore::{
    EventEnvelope, EventId, EventMetadata, EventType, ExpectedVersion, PersistedEvent, StreamId,
};
use crate::service::ServiceError;

/// Events a read returns when the request names no limit.
const DEFAULT_LIMIT: u32 = 100;

/// The gRPC face of the event store.
pub struct EventStoreApi {
    state: AppState,
}

impl EventStoreApi {
    /// Serves `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn status(e: impl Into<ServiceError>) -> Status {
    ApiError::from(e.into()).into()
}

fn invalid(msg: impl ToString) -> Status {
    status(ServiceError::Invalid(msg.to_string()))
}

fn stream_id(raw: &str) -> Result<StreamId, Status> {
    StreamId::parse(raw).map_err(invalid)
}

fn limit(n: u32) -> u32 {
    if n == 0 { DEFAULT_LIMIT } else { n }
}

/// A `NewEvent`, parsed; `i` names it in errors.
fn new_event(i: usize, e: proto::NewEvent) -> Result<EventEnvelope, Status> {
    let at = |m: String| invalid(format!("events[{i}]: {m}"));
    let m = e.metadata.unwrap_or_default();
    let when = match &m.timestamp {
        Some(t) => from_timestamp(t).ok_or_else(|| at("metadata.timestamp out of range".into()))?,
        None => crate::clock::now(),
    };
    let mut metadata = EventMetadata::at(when);
    metadata.correlation_id = m.correlation_id;
    metadata.causation_id = m.causation_id;
    metadata.user_id = match m.user_id {
        Some(u) => Some(UserId::parse(&u).map_err(|e| at(format!("metadata.user_id: {e}")))?),
        None => None,
    };
    let event_type = EventType::parse(&e.r#type).map_err(|e| at(e.to_string()))?;
    let data = e.data.map(value_to_json).unwrap_or_default();
    let event = EventEnvelope::new(event_type, data, metadata);
    Ok(match e.event_id {
        Some(id) => event.with_id(EventId::parse(&id).map_err(|e| at(e.to_string()))?),
        None => event,
    })
}

/// A stored event as a message.
pub fn stored_event(e: PersistedEvent) -> proto::StoredEvent {
    proto::StoredEvent {
        event_id: e.event_id.to_string(),
        stream_id: e.stream_id.to_string(),
        stream_version: e.stream_version,
        global_position: e.global_position,
        r#type: e.event_type.to_string(),
        data: Some(json_to_value(e.event_data)),
        metadata: Some(proto::EventMetadata {
            correlation_id: e.metadata.correlation_id,
            causation_id: e.metadata.causation_id,
            user_id: e.metadata.user_id.map(|u| u.to_string()),
            timestamp: Some(timestamp(e.metadata.timestamp)),
        }),
        created_at: Some(timestamp(e.created_at)),
    }
}

fn events(list: Vec<PersistedEvent>) -> Vec<proto::StoredEvent> {
    list.into_iter().map(stored_event).collect()
}

/// A server stream of stored events.
pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<proto::StoredEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl EventStoreService for EventStoreApi {
    type SubscribeAllStream = EventStream;

    async fn append(
        &self,
        request: Request<proto::AppendRequest>,
    ) -> Result<Response<proto::AppendResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let stream = stream_id(&r.stream_id)?;
        let batch = r
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| new_event(i, e))
            .collect::<Result<Vec<_>, _>>()?;
        let expected = ExpectedVersion::from_option(r.expected_version);
        let appended = self
            .state
            .eventstore
            .append(&caller, &stream, expected, batch)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::AppendResponse {
            stream_id: stream.to_string(),
            stream_version: appended.stream_version,
            events: appended
                .events
                .iter()
                .map(|p| proto::EventPosition {
                    event_id: p.event_id.to_string(),
                    stream_version: p.stream_version,
                    global_position: p.global_position,
                })
                .collect(),
            already_stored: appended.already_stored,
        }))
    }

    async fn read_stream(
        &self,
        request: Request<proto::ReadStreamRequest>,
    ) -> Result<Response<proto::ReadEventsResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let stream = stream_id(&r.stream_id)?;
        let list = self
            .state
            .eventstore
            .read_stream(&caller, &stream, r.from_version, r.to_version)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ReadEventsResponse {
            events: events(list),
        }))
    }

    async fn read_all(
        &self,
        request: Request<proto::ReadAllRequest>,
    ) -> Result<Response<proto::ReadAllResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let page = self
            .state
            .eventstore
            .read_all(&caller, r.from_position, limit(r.limit))
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ReadAllResponse {
            events: events(page.events),
            next_position: page.next_position,
        }))
    }

    async fn read_by_type(
        &self,
        request: Request<proto::ReadByTypeRequest>,
    ) -> Result<Response<proto::ReadEventsResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let event_type = EventType::parse(&r.r#type).map_err(invalid)?;
        let time = |t: Option<prost_types::Timestamp>| -> Result<_, Status> {
            t.map(|t| from_timestamp(&t).ok_or_else(|| invalid("timestamp out of range")))
                .transpose()
        };
        let from = time(r.from)?.unwrap_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
        let list = self
            .state
            .eventstore
            .read_by_type(&caller, &event_type, from, time(r.to)?, limit(r.limit))
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ReadEventsResponse {
            events: events(list),
        }))
    }

    async fn subscribe_all(
        &self,
        request: Request<proto::SubscribeAllRequest>,
    ) -> Result<Response<Self::SubscribeAllStream>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let from = request.into_inner().from_position;
        let pass = self
            .state
            .notifications
            .stream_quota()
            .acquire(&caller.user_id)
            .map_err(|e| Status::from(ApiError::from(e)))?;
        let stream = self
            .state
            .eventstore
            .subscribe(&caller, from)
            .map_err(status)?;
        // The subscription ends quietly when the service drains; tell the client to resume.
        let tail = futures::stream::once(async {
            Err(Status::unavailable(
                "the instance is shutting down; resume from the last position + 1",
            ))
        });
        // The stream holds the caller's place in the per-user stream quota until dropped.
        let items = stream.map(move |item| {
            let _held = &pass;
            item.map(stored_event).map_err(status)
        });
        Ok(Response::new(Box::pin(items.chain(tail))))
    }
}
