//! The edge: HTTP and gRPC requests, and the event streams browsers and clients hold open.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use super::bounded;

/// HTTP requests, by `method`, `route` (the matched template) and `status`.
pub const HTTP_REQUESTS: &str = "ais_http_requests_total";
/// HTTP request seconds, by `method`, `route` and `status`.
pub const HTTP_DURATION: &str = "ais_http_request_duration_seconds";
/// gRPC calls, by `method` (`/package.Service/Method`) and `code` (the status name).
pub const GRPC_REQUESTS: &str = "ais_grpc_requests_total";
/// gRPC call seconds (for a server stream: until its response starts), by `method` and `code`.
pub const GRPC_DURATION: &str = "ais_grpc_request_duration_seconds";
/// Event streams open on this instance, by `transport` (`sse`, `websocket`, `grpc`).
pub const STREAMS_OPEN: &str = "ais_streams_open";
/// Events handed to clients, by `transport`.
pub const EVENTS_DELIVERED: &str = "ais_events_delivered_total";
/// Seconds from an event's commit to its hand-over to a live stream, by `transport` (events
/// read back for a resume are not counted: their age is the client's absence).
pub const DELIVERY_LAG: &str = "ais_event_delivery_lag_seconds";
/// Streams cut off because the client read too slowly, by `transport`.
pub const SLOW_CONSUMERS: &str = "ais_slow_consumers_dropped_total";

/// Admin actions done but not written to the audit log (its store failed).
pub const AUDIT_WRITE_FAILURES: &str = "ais_audit_write_failures_total";

pub(super) fn describe() {
    describe_counter!(
        AUDIT_WRITE_FAILURES,
        "Admin actions done but not written to the audit log."
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests, by method, route and status.");
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request seconds, by method, route and status."
    );
    describe_counter!(GRPC_REQUESTS, "gRPC calls, by method and code.");
    describe_histogram!(
        GRPC_DURATION,
        metrics::Unit::Seconds,
        "gRPC call seconds (a stream's until its response starts), by method and code."
    );
    describe_gauge!(
        STREAMS_OPEN,
        "Event streams open on this instance, by transport."
    );
    describe_counter!(EVENTS_DELIVERED, "Events handed to clients, by transport.");
    describe_histogram!(
        DELIVERY_LAG,
        metrics::Unit::Seconds,
        "Seconds from an event's commit to its hand-over to a live stream, by transport."
    );
    describe_counter!(
        SLOW_CONSUMERS,
        "Streams cut off because the client read too slowly, by transport."
    );
}

/// One HTTP request answered.
pub fn http_request(method: &str, route: &str, status: u16, took: Duration) {
    const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    let method = bounded(METHODS, method, "OTHER");
    let status = status.to_string();
    counter!(HTTP_REQUESTS, "method" => method, "route" => route.to_owned(),
        "status" => status.clone())
    .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route.to_owned(), "status" => status)
        .record(took.as_secs_f64());
}

/// One gRPC call answered. `method` must be one the server serves (the caller checks), so the
/// label stays bounded.
pub fn grpc_request(method: String, code: &'static str, took: Duration) {
    counter!(GRPC_REQUESTS, "method" => method.clone(), "code" => code).increment(1);
    histogram!(GRPC_DURATION, "method" => method, "code" => code).record(took.as_secs_f64());
}

/// Counts an open stream on `transport` until dropped.
#[derive(Debug)]
pub struct OpenStream {
    transport: &'static str,
}

impl OpenStream {
    /// A stream opened on `transport`.
    pub fn open(transport: &'static str) -> Self {
        gauge!(STREAMS_OPEN, "transport" => transport).increment(1.0);
        Self { transport }
    }

    /// An event handed to the client; `lag` is its age when it came live (`None` when read
    /// back from the store for a resume).
    pub fn delivered(&self, lag: Option<Duration>) {
        counter!(EVENTS_DELIVERED, "transport" => self.transport).increment(1);
        if let Some(lag) = lag {
            histogram!(DELIVERY_LAG, "transport" => self.transport).record(lag.as_secs_f64());
        }
    }

    /// The stream is cut off as too slow.
    pub fn dropped_as_slow(&self) {
        counter!(SLOW_CONSUMERS, "transport" => self.transport).increment(1);
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        gauge!(STREAMS_OPEN, "transport" => self.transport).decrement(1.0);
    }
}

/// An admin action's audit entry could not be stored.
pub fn audit_write_failed() {
    counter!(AUDIT_WRITE_FAILURES).increment(1);
}
