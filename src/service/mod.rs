//! The use cases the APIs call: tasks, notifications and stream tickets, queues, admin,
//! providers and usage, the dashboard's live view, readiness, the event store, its
//! projections and the progress read models. Each in its own file or folder.

mod admin;
pub mod audit;
pub mod chat;
pub mod dashboard;
mod error;
pub mod eventstore;
mod metrics;
pub mod notifications;
pub mod pipeline;
pub mod progress;
pub mod projections;
mod providers;
mod queue_depth;
mod queues;
mod readiness;
pub mod request;
mod retention;
mod sessions;
mod stream_quota;
mod tasks;
mod tickets;

pub use admin::{AdminService, DeadLetter, DeadLetterFilter, QueueStats, Selection};
pub use chat::{ChatError, ChatExpiry, ChatService, ChatSettings};
pub use dashboard::{DashboardFeed, DashboardService};
pub use error::ServiceError;
pub use eventstore::{AllPage, EventStoreService, MAX_APPEND_BATCH};
pub use metrics::{MetricsService, MetricsSources};
pub use notifications::{
    CloseReason, EventStream, NotificationService, Scope, StreamItem, StreamLimits, StreamRequest,
};
pub use pipeline::PipelineService;
pub use progress::ProgressService;
pub use projections::{ProjectionManager, ProjectionView, ProjectionsService, StoreHead};
pub use providers::{BudgetReport, ProviderHealth, ProvidersReport, ProvidersService};
pub use queues::{QueueService, QueueView};
pub use readiness::Readiness;
pub use retention::Retention;
pub use sessions::{SessionBook, SessionCell};
pub use stream_quota::{StreamPass, StreamQuota};
pub use tasks::{MAX_BATCH, SubmitLimits, TaskService};
pub use tickets::{IssuedTicket, Redeemed, StreamTickets};
