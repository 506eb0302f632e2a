//! The edges: HTTP/JSON (axum) and gRPC (tonic) on one port. Thin: authenticate, translate,
//! call the task service, translate back.

pub mod auth;
pub mod error;
mod fallback;
pub mod grpc;
pub mod http;
pub mod limits;
pub mod proto;
pub mod request_id;

use axum::Router;

use crate::auth::JwtKeys;
use crate::service::audit::AuditLog;
use crate::service::{
    AdminService, ChatService, DashboardService, EventStoreService, MetricsService,
    NotificationService, PipelineService, ProgressService, ProjectionsService, ProvidersService,
    Readiness, StreamTickets, TaskService,
};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The task service.
    pub tasks: TaskService,
    /// Operator views.
    pub admin: AdminService,
    /// Verifies bearer tokens.
    pub keys: JwtKeys,
    /// Live event streams.
    pub notifications: NotificationService,
    /// One-time tickets that open a stream without a JWT in its URL.
    pub tickets: StreamTickets,
    /// Providers, usage, budgets.
    pub providers: ProvidersService,
    /// Whether to take traffic (`/readyz`; gRPC health follows the same answer).
    pub readiness: Readiness,
    /// The Prometheus scrape.
    pub metrics: MetricsService,
    /// Appends, reads and live subscriptions of the event store.
    pub eventstore: EventStoreService,
    /// The progress read models.
    pub progress: ProgressService,
    /// The projections' lag, rebuilds and parks.
    pub projections: ProjectionsService,
    /// Admin actions, as recorded.
    pub audit: AuditLog,
    /// Deep-dive chat sessions.
    pub chat: ChatService,
    /// The operator dashboard's live view.
    pub dashboard: DashboardService,
    /// Pipeline definitions and sessions.
    pub pipelines: PipelineService,
}

/// HTTP routes and gRPC services (with `health` and reflection) as one router: HTTP/1.1 and
/// HTTP/2 (h2c) requests are told apart by the server, gRPC ones by path; a path neither has
/// answers in the caller's protocol.
/// `edge` wraps both in the limits every request passes (docs/security.md).
pub fn router(state: AppState, health: grpc::health::HealthApi, edge: limits::Edge) -> Router {
    let routes = http::routes(state.clone())
        .merge(grpc::routes(state, health))
        .fallback(fallback::no_route);
    edge.apply(routes)
        .layer(axum::middleware::from_fn(http::track_metrics))
        .layer(axum::middleware::from_fn(request_id::assign))
}
