//! gRPC services: `ai.integration.v1` TaskService, AdminService, NotificationService,
//! ProviderService, EventStoreService, ProgressService, ChatService and PipelineService,
//! `grpc.health.v1.Health` and reflection.

pub mod admin;
mod chat;
pub mod convert;
mod eventstore;
pub mod health;
mod metrics;
mod notifications;
mod pipelines;
mod progress;
mod providers;
pub(crate) mod tasks;
mod trace;

use axum::Router;

use super::AppState;
use super::proto::admin_service_server::AdminServiceServer;
use super::proto::chat_service_server::ChatServiceServer;
use super::proto::event_store_service_server::EventStoreServiceServer;
use super::proto::notification_service_server::NotificationServiceServer;
use super::proto::pipeline_service_server::PipelineServiceServer;
use super::proto::progress_service_server::ProgressServiceServer;
use super::proto::provider_service_server::ProviderServiceServer;
use super::proto::task_service_server::TaskServiceServer;

/// Most bytes in one gRPC message: a full 1,000-task batch of large payloads fits.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The gRPC services as an axum router, with `health` (fed by its [`health::HealthWatch`]).
/// Without a fallback: the caller decides what an unknown path answers.
pub fn routes(state: AppState, health: health::HealthApi) -> Router {
    // Both reflection versions: older grpcurl builds speak only v1alpha. Each lists (and can
    // describe) both, since a client sees only the version it asks.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(super::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    // Infallible for the descriptor sets compiled into this binary.
    let reflection_v1 = reflection().build_v1().expect("valid descriptor sets");
    let reflection_v1alpha = reflection().build_v1alpha().expect("valid descriptor sets");
    let tasks = TaskServiceServer::new(tasks::TaskApi::new(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = AdminServiceServer::new(admin::AdminApi::new(state.clone()));
    let notifications =
        NotificationServiceServer::new(notifications::NotificationApi::new(state.clone()));
    tonic::service::Routes::new(tasks)
        .add_service(admin)
        .add_service(notifications)
        .add_service(ProviderServiceServer::new(providers::ProviderApi::new(
            state.clone(),
        )))
        .add_service(
            EventStoreServiceServer::new(eventstore::EventStoreApi::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(ProgressServiceServer::new(progress::ProgressApi::new(
            state.clone(),
        )))
        .add_service(ChatServiceServer::new(chat::ChatApi::new(state.clone())))
        .add_service(PipelineServiceServer::new(pipelines::PipelineApi::new(
            state.clone(),
        )))
        .add_service(tonic_health::pb::health_server::HealthServer::new(health))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router()
        // tonic's own fallback answers every unknown path with gRPC UNIMPLEMENTED, even plain
        // HTTP requests; `api::fallback` tells the two apart instead.
        .reset_fallback()
        .route_layer(axum::middleware::from_fn(trace::server_span))
        .route_layer(axum::middleware::from_fn(
            super::limits::message_size_status,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
}
