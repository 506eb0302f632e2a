//! `ai.integration.v1.ChatService`: chat sessions over gRPC; SendMessage streams the answer.

use std::pin::Pin;

use futures::Stream;
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::convert::{json_to_value, struct_to_json, timestamp};
use crate::api::AppState;
use crate::api::auth::grpc_caller;
use crate::api::error::ApiError;
use crate::api::proto::{self, chat_service_server::ChatService};
use crate::domain::chat::{ChatMessage, ChatSession};
use crate::service::ChatError;
use crate::service::chat::ChatEvent;

/// The gRPC face of chat sessions.
pub struct ChatApi {
    state: AppState,
}

impl ChatApi {
    /// Serves `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn status(e: ChatError) -> Status {
    ApiError::from(e).into()
}

/// A session as sent.
pub fn session_to_proto(s: ChatSession) -> proto::ChatSession {
    let context = match json_to_value(s.context).kind {
        Some(prost_types::value::Kind::StructValue(st)) => Some(st),
        _ => None,
    };
    proto::ChatSession {
        session_id: s.id.to_string(),
        user_id: s.user_id.to_string(),
        item_id: s.item_id.to_string(),
        status: s.status.as_str().to_owned(),
        context,
        started_at: Some(timestamp(s.started_at)),
        last_activity: Some(timestamp(s.last_activity)),
        message_count: s.message_count,
    }
}

/// A message as sent.
pub fn message_to_proto(m: ChatMessage) -> proto::ChatMessage {
    proto::ChatMessage {
        message_id: m.id.to_string(),
        seq: m.seq,
        role: m.role.as_str().to_owned(),
        content: m.content,
        tokens_used: m.tokens_used,
        provider: m.provider.unwrap_or_default(),
        model: m.model.unwrap_or_default(),
        cost_micros: m.cost_micros.0,
        created_at: Some(timestamp(m.created_at)),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::SendMessageEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ChatService for ChatApi {
    async fn start_session(
        &self,
        request: Request<proto::StartSessionRequest>,
    ) -> Result<Response<proto::StartSessionResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let context = r.context.map_or(Value::Null, struct_to_json);
        let (session, created) = self
            .state
            .chat
            .start_session(&caller.user_id, &r.item_id, context)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::StartSessionResponse {
            session: Some(session_to_proto(session)),
            created,
        }))
    }

    type SendMessageStream = EventStream;

    async fn send_message(
        &self,
        request: Request<proto::SendMessageRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let reply = self
            .state
            .chat
            .send_message(
                &caller.user_id,
                &r.session_id,
                &r.content,
                Some(r.idempotency_key.as_str()),
            )
            .await
            .map_err(status)?;
        let replayed = reply.replayed;
        let stream = futures::stream::unfold(Some(reply.events), move |rx| async move {
            let mut rx = rx?;
            let event = rx.recv().await?;
            Some(match event {
                ChatEvent::Delta(text) => (
                    Ok(proto::SendMessageEvent {
                        kind: Some(proto::send_message_event::Kind::Delta(text)),
                        ..Default::default()
                    }),
                    Some(rx),
                ),
                ChatEvent::Answered(turn) => (
                    Ok(proto::SendMessageEvent {
                        kind: Some(proto::send_message_event::Kind::Message(message_to_proto(
                            turn.answer,
                        ))),
                        question: Some(message_to_proto(turn.question)),
                        replayed,
                    }),
                    None,
                ),
                ChatEvent::Failed(e) => (Err(status(e)), None),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_session(
        &self,
        request: Request<proto::GetSessionRequest>,
    ) -> Result<Response<proto::GetSessionResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let (session, messages) = self
            .state
            .chat
            .session_with_messages(&caller.user_id, &r.session_id, r.after_seq, r.page_size)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::GetSessionResponse {
            session: Some(session_to_proto(session)),
            messages: messages.into_iter().map(message_to_proto).collect(),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<proto::ListSessionsRequest>,
    ) -> Result<Response<proto::ListSessionsResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let page = self
            .state
            .chat
            .list_sessions(&caller.user_id, r.page_size, &r.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ListSessionsResponse {
            sessions: page.items.into_iter().map(session_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn close_session(
        &self,
        request: Request<proto::CloseSessionRequest>,
    ) -> Result<Response<proto::ChatSession>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let session = self
            .state
            .chat
            .close_session(&caller.user_id, &r.session_id)
            .await
            .map_err(status)?;
        Ok(Response::new(session_to_proto(session)))
    }
}
