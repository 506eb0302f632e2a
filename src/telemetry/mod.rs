//! What operators watch the service by: Prometheus metrics (`metrics/`), OpenTelemetry traces
//! (`traces.rs`) and the log output (`logging.rs`).

pub mod logging;
pub mod metrics;
pub mod traces;
