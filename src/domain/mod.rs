//! The task aggregate, its state machine and the values it is made of; the event store's
//! values in `eventstore/`.
//!
//! Pure: no I/O, no async runtime, no clock. Callers pass `now` in, so every rule here is
//! testable with fixed times.

pub mod audit;
pub mod chat;
mod error;
mod event;
pub mod eventstore;
mod ids;
mod page;
pub mod payload;
pub mod pipeline;
mod priority;
pub mod progress;
pub mod projection;
mod queue;
pub mod redact;
mod role;
mod status;
mod submit;
mod task;
mod task_type;
mod tier;
mod trace;
mod usage;

pub use error::{DomainError, ErrorClass, TaskError};
pub use event::{MAX_EVENT_BYTES, NewEvent, StoredEvent, TaskEvent, TaskEventType};
pub use ids::{TaskId, UserId, WorkerId};
pub use page::{Page, PageRequest, encode_token};
pub use priority::{Priority, PriorityLevel};
pub use queue::{QueueKind, QueueName};
pub use role::Role;
pub use status::TaskStatus;
pub use submit::{MAX_PAYLOAD_BYTES, NewTask, SubmitPolicy, Submitter, TaskRequest};
pub use task::{RelatedEntity, Task};
pub use task_type::TaskType;
pub use tier::Tier;
pub use trace::TraceContext;
pub use usage::{AttemptOutcome, Micros, ProviderAttempt, month_of, parse_month};
