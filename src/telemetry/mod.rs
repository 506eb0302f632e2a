//! What operators watch the service by: Prometheus metrics (`metrics/`), OpenTelemetry traces
//! (`traces.rs`), the log output (`logging.rs`) and the dashboard's live counters (`live/`).

pub mod live;
pub mod logging;
pub mod metrics;
pub mod panics;
pub mod traces;
