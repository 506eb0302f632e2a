//! Conformance suite: the same tests run against every implementation of each port, on real
//! servers (never mocks).
//!
//! - [`TaskStore`](ai_integration_service::store::TaskStore) and the other store ports:
//!   PostgreSQL (`…::postgres`) and SQLite (`…::sqlite`).
//! - [`TaskQueue`](ai_integration_service::queue::TaskQueue), the rate limiter and the
//!   breakers: Redis (`…::redis`) and in-process (`…::memory`).
//!
//! One file per port or concern; each declares its cases with the harness macros
//! (`store_tests!`, `queue_tests!`), which run every case against every implementation.
//! Each test gets a fresh database / key prefix / temp dir (see `tests/support`), so tests run
//! in parallel. Timestamps are truncated to microseconds, which is what PostgreSQL keeps, so a
//! stored task compares equal to the one written.

#[path = "../support/mod.rs"]
mod support;

mod fixtures;

mod breakers;
mod claims;
mod dead_letters;
mod events;
mod notifications;
mod outcomes;
mod postgres_hot_path;
mod queries;
mod queues;
mod rate_limiter;
mod stream_tickets;
mod task_queue;
mod tasks;
mod usage_store;
