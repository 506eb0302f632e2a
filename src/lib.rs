//! AI Integration Service: a durable AI task queue and gateway.
//!
//! `domain` is the pure core; `store` and `queue` are ports with their implementations;
//! `service` is what the APIs call; `worker` runs tasks; `api` translates gRPC and HTTP;
//! `app` wires it all together.

pub mod api;
pub mod app;
pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error_text;
pub mod execution;
#[doc(hidden)]
pub mod fuzzing;
pub mod group_commit;
pub mod providers;
pub mod queue;
pub mod ratelimit;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod worker;
