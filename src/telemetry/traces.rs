//! Traces: OpenTelemetry spans exported over OTLP when an endpoint is configured, and the W3C
//! trace context that links a task's submit to every attempt that runs it.
//!
//! Off by default, and then free: no layer is installed, [`enabled`] is false, and every span
//! constructor here returns [`Span::none`] without looking at anything. On, [`layer`] builds the
//! SDK's tracer provider and a `tracing` layer that turns this crate's spans (never its log
//! events, which may quote provider error bodies) into OpenTelemetry spans.
//!
//! The spans, named and attributed after the OpenTelemetry semantic conventions where they
//! exist; none carries a user id, a payload, a prompt, a key or an error's text:
//!
//! | span | kind | attributes |
//! |---|---|---|
//! | `{method} {route}` | server | `http.request.method`, `http.route`, `http.response.status_code` |
//! | `{service}/{method}` | server | `rpc.system` = `grpc`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code` |
//! | `task.run` | consumer | `task.id`, `task.type`, `queue`, `attempt`, `outcome` |
//! | `provider.attempt` | client | `provider`, `attempt`, `gen_ai.request.model`, `gen_ai.usage.*`, `outcome` |
//!
//! A request's span continues the caller's `traceparent` (header or gRPC metadata). A submit
//! stores the current span's context with each task ([`current_context`]); `task.run` takes it
//! as its parent ([`task_run_span`]), on whichever instance claims the task, so one trace holds
//! the submit, the wait, every attempt and every provider call.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::domain::{Task, TraceContext};

/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "ai-integration-service";

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (`grpc`), usually port 4317.
    Grpc,
    /// OTLP protobuf over HTTP POSTs (`http/protobuf`, the spec's default), usually port 4318.
    HttpProtobuf,
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracesConfig {
    /// The collector's URL for traces: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces` over HTTP, as the spec says).
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: OtlpProtocol,
    /// `service.name`: `OTEL_SERVICE_NAME`, else the one in `OTEL_RESOURCE_ATTRIBUTES`, else
    /// [`DEFAULT_SERVICE_NAME`].
    pub service_name: String,
}

/// Whether spans are exported: set once, when [`layer`] builds a layer.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The crate whose spans are exported; other crates' spans (sqlx, h2, ...) stay local.
const OWN_TARGET: &str = env!("CARGO_CRATE_NAME");

/// Whether spans are being exported; span constructors return [`Span::none`] when not.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Flushes and shuts down the tracer provider when dropped (at exit, after the server has
/// drained): spans still batched are exported then. Drop it outside the async runtime but
/// before the runtime itself, which the gRPC exporter's connection runs on.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct TracesGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TracesGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            // The subscriber may be gone by now; stderr is not.
            eprintln!("could not flush traces at shutdown: {e}");
        }
    }
}

/// The layer that exports this crate's spans to `config`'s collector, and the guard that
/// flushes it at exit; no layer when `config` is `None`. Call within the Tokio runtime: the
/// gRPC exporter's connection is spawned on it. The SDK reads the other standard variables
/// itself: `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`,
/// `OTEL_EXPORTER_OTLP_HEADERS` and `..._TIMEOUT`, `OTEL_RESOURCE_ATTRIBUTES`.
pub fn layer<S>(
    config: Option<&TracesConfig>,
) -> anyhow::Result<(Option<impl Layer<S>>, TracesGuard)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(config) = config else {
        return Ok((None, TracesGuard { provider: None }));
    };
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&config.endpoint)
            .build(),
        OtlpProtocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&config.endpoint)
            .build(),
    }
    .context("building the OTLP span exporter")?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(OWN_TARGET);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_target(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with(OWN_TARGET)
        }));
    ENABLED.store(true, Ordering::Relaxed);
    Ok((
        Some(layer),
        TracesGuard {
            provider: Some(provider),
        },
    ))
}

/// Reads W3C trace headers from an HTTP request's headers or a gRPC call's metadata.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` continue the caller's trace when `headers` carry a `traceparent` (and
/// `tracestate`); a request without one starts a trace. Call before the span is entered.
fn continue_caller(span: &Span, headers: &HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only for a span no layer records; it then has no parent to set.
    let _ = span.set_parent(parent);
}

/// The server span of an HTTP request to `route` (a template such as `/api/v1/tasks/{task_id}`,
/// never the raw path), continuing the caller's trace.
pub fn http_server_span(method: &str, route: &str, headers: &HeaderMap) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
    );
    continue_caller(&span, headers);
    span
}

/// Records the response status on an [`http_server_span`]; a 5xx marks the span as an error.
pub fn http_response(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// The server span of a gRPC call to `service`/`method`, continuing the caller's trace from
/// its metadata.
pub fn grpc_server_span(service: &str, method: &str, headers: &HeaderMap) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
    );
    continue_caller(&span, headers);
    span
}

/// Records a gRPC status code on a [`grpc_server_span`]; codes the conventions count as server
/// errors mark the span as an error.
pub fn grpc_status(span: &Span, code: i64) {
    span.record("rpc.grpc.status_code", code);
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
        span.record("otel.status_code", "ERROR");
    }
}

/// The context of the current span, to store with a task submitted under it; `None` when
/// traces are off or the span is not recorded.
pub fn current_context() -> Option<TraceContext> {
    if !enabled() {
        return None;
    }
    let cx = Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    TraceContext::parse(&format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
    .ok()
}

/// The OpenTelemetry context a stored [`TraceContext`] stands for: a remote parent.
fn stored_parent(stored: &TraceContext) -> Option<opentelemetry::Context> {
    let trace_id = TraceId::from_hex(stored.trace_id()).ok()?;
    let span_id = SpanId::from_hex(stored.parent_id()).ok()?;
    let flags = if stored.sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let sc = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    Some(opentelemetry::Context::new().with_remote_span_context(sc))
}

/// The span of one attempt of `task` on this worker, a child of the span that submitted it
/// when the task carries a stored context. Its `outcome` is recorded by [`task_outcome`].
pub fn task_run_span(task: &Task) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        parent: None,
        "task.run",
        otel.kind = "consumer",
        otel.status_code = Empty,
        task.id = %task.id,
        "task.type" = task.task_type.as_str(),
        queue = task.queue.as_str(),
        attempt = task.attempts,
        outcome = Empty,
    );
    if let Some(parent) = task.trace_context.as_ref().and_then(stored_parent) {
        let _ = span.set_parent(parent);
    }
    span
}

/// Records how an attempt ended on a [`task_run_span`] (`completed`, `retried`, `failed`,
/// `cancelled`); a failure for good marks the span as an error.
pub fn task_outcome(span: &Span, outcome: &str) {
    span.record("outcome", outcome);
    if outcome == "failed" {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one try of a provider (the `attempt`-th of this task attempt's chain) with
/// `model`, a child of the current span. Its `outcome` is recorded by [`provider_outcome`].
pub fn provider_attempt_span(provider: &str, attempt: u32, model: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        "provider.attempt",
        otel.kind = "client",
        otel.status_code = Empty,
        provider = %provider,
        attempt,
        gen_ai.request.model = %model,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        outcome = Empty,
    )
}

/// Records how a provider try ended on a [`provider_attempt_span`] (an
/// [`AttemptOutcome`](crate::domain::AttemptOutcome) name), with its token counts when it
/// answered.
pub fn provider_outcome(span: &Span, outcome: &str, tokens: Option<(u64, u64)>) {
    span.record("outcome", outcome);
    if let Some((input, output)) = tokens {
        span.record("gen_ai.usage.input_tokens", input);
        span.record("gen_ai.usage.output_tokens", output);
    }
    if outcome != "ok" {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a configured endpoint nothing is built or installed, and the constructors hand
    /// out disabled spans at no cost.
    #[test]
    fn off_without_a_config() {
        let (layer, _guard) = layer::<tracing_subscriber::Registry>(None).unwrap();
        assert!(layer.is_none());
        assert!(!enabled());
        assert!(http_server_span("GET", "/", &HeaderMap::new()).is_none());
        assert!(task_run_span(&Task::echo_for_test("u1")).is_none());
        assert!(provider_attempt_span("echo", 1, "m").is_none());
        assert_eq!(current_context(), None);
    }

    #[test]
    fn a_stored_context_becomes_a_remote_sampled_parent() {
        let stored =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let cx = stored_parent(&stored).unwrap();
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(sc.trace_id().to_string(), stored.trace_id());
        assert_eq!(sc.span_id().to_string(), stored.parent_id());
        assert!(sc.is_remote() && sc.is_sampled());
    }
}
