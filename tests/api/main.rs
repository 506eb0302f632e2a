//! End-to-end tests: the real server on a free port, driven by a real HTTP client and a real
//! gRPC client, in embedded (SQLite + in-process queue) and clustered (PostgreSQL + Redis) mode.

#[path = "../support/mod.rs"]
mod support;

mod helpers;

mod admin;
mod ai;
mod audit;
mod auth_jwks;
mod authz_grpc;
mod authz_matrix;
mod bad_input;
mod browser;
mod chat;
mod chat_browser;
mod chat_grpc;
mod chat_support;
mod dashboard;
mod dashboard_browser;
mod eventstore;
mod eventstore_grpc;
mod fallback;
mod faults;
mod grpc;
mod grpcurl;
mod health;
mod http;
mod lifecycle;
mod limits;
mod metrics;
mod notify;
mod notify_support;
mod openapi;
mod otlp;
mod payloads;
mod pipeline_faults;
mod pipeline_grpc;
mod pipeline_streams;
mod pipelines;
mod queues;
mod seed_fields;
mod task_feed;
mod tickets;
mod traces;
