//! What operators watch the service by: Prometheus metrics (`metrics.rs`). Traces and log
//! setup join here.

pub mod metrics;
