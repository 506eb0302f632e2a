//! AI Integration Service: a durable AI task queue and gateway.
//!
//! See `README.md` for the picture; `domain` is the pure core, `store`, `queue` and `bus` are
//! ports with their implementations, `worker` runs tasks, `api` translates gRPC and HTTP.

pub mod domain;
pub mod queue;
pub mod store;
