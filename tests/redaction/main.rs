//! Canary secrets sent through every path that reaches a client or a log line must come out
//! masked: provider error bodies (the task's stored error), bad requests (HTTP 400 and gRPC
//! INVALID_ARGUMENT), task payloads logged at debug level, and rejected `Authorization`
//! headers; and what operators read (dead letters, providers, audit, /metrics, the dashboard)
//! with canary keys configured, and a panic quoting a secret. A binary of its own, because it
//! installs the process-wide subscriber: every app in it logs at debug level into two
//! buffers, one per `LOG_FORMAT`, which each test searches.

#[path = "../support/mod.rs"]
mod support;

// Only some of the end-to-end helpers are used here.
#[allow(dead_code, unused_macros, unused_imports)]
#[path = "../api/helpers.rs"]
mod helpers;

mod canaries;
mod capture;
mod surfaces;
