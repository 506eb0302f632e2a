//! What operators watch the service by: Prometheus metrics (`metrics.rs`) and OpenTelemetry
//! traces (`traces.rs`). Log setup joins here.

pub mod metrics;
pub mod traces;
