//! What operators watch the service by: Prometheus metrics (`metrics.rs`) and the log output
//! (`logging.rs`). Traces join here.

pub mod logging;
pub mod metrics;
