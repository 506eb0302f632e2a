//! Log output: plain text (`LOG_FORMAT=text`, the default) or one JSON object per line in
//! Google Cloud Logging's structured shape (`LOG_FORMAT=json`), filtered by `RUST_LOG`.
//!
//! Every line is masked by [`redact`] before it is written, whatever the call site logged:
//! text lines as a whole in the writer ([`Redacting`]), JSON lines value by value in the
//! formatter ([`CloudLogging`]), so masking never breaks the JSON's escapes.
//!
//! A JSON line: `severity`, `message`, `timestamp` (RFC 3339), `target`,
//! `logging.googleapis.com/sourceLocation`, the event's own fields at the top level (a field
//! named like one of these keys is written as `field.<name>`), `spans` (the current spans,
//! root first, each `{"name", ...fields}`), and, inside an OpenTelemetry span,
//! `logging.googleapis.com/trace` (`projects/<GOOGLE_CLOUD_PROJECT>/traces/<id>`, or `trace_id`
//! alone when no project is set) and `logging.googleapis.com/spanId`.

use std::fmt;
use std::io::{self, IsTerminal};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use chrono::{SecondsFormat, Utc};
use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Level, Subscriber, span};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::domain::redact::redact;

/// The filter when `RUST_LOG` is unset or invalid.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Cloud Logging's key for the trace a line belongs to.
const TRACE_KEY: &str = "logging.googleapis.com/trace";
/// Cloud Logging's key for the span a line was written in.
const SPAN_ID_KEY: &str = "logging.googleapis.com/spanId";
/// Cloud Logging's key for the code that wrote a line.
const SOURCE_KEY: &str = "logging.googleapis.com/sourceLocation";
/// Keys the formatter writes itself; an event field of the same name gets a `field.` prefix.
const RESERVED: [&str; 9] = [
    "severity",
    "message",
    "timestamp",
    "target",
    "spans",
    "trace_id",
    TRACE_KEY,
    SPAN_ID_KEY,
    SOURCE_KEY,
];

/// `LOG_FORMAT`: how lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (tracing's default format), coloured on a terminal.
    #[default]
    Text,
    /// One Cloud Logging JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("{s:?} is not a log format; expected text or json")),
        }
    }
}

/// What the log output needs from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// `LOG_FORMAT`.
    pub format: LogFormat,
    /// `GOOGLE_CLOUD_PROJECT`: the project in JSON lines' trace names, so Cloud Logging links a
    /// line to its trace.
    pub project: Option<String>,
}

/// A layer installed beneath the log output, seeing every span and event the filter lets
/// through: OpenTelemetry's, when traces are exported.
pub type BaseLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the process-wide subscriber: `base` (if any), and the log output on stdout in
/// `settings`' format behind the `RUST_LOG` filter. The filter is the log output's own, not
/// global: `RUST_LOG=warn` must not stop the spans `base` exports. Panics are logged through
/// it too ([`super::panics`]). Fails if a subscriber is already installed.
pub fn init(settings: &LogSettings, base: Option<BaseLayer>) -> Result<(), TryInitError> {
    tracing_subscriber::registry()
        .with(base)
        .with(layer(settings, io::stdout, io::stdout().is_terminal()).with_filter(env_filter()))
        .try_init()?;
    // Panics go through the same masking as every other line.
    super::panics::install();
    Ok(())
}

/// `RUST_LOG`, or [`DEFAULT_FILTER`].
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// The log output as a layer writing to `make_writer` (tests pass a buffer). `ansi` colours
/// text lines; JSON lines never are.
pub fn layer<S, W>(
    settings: &LogSettings,
    make_writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match settings.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(Redacting(make_writer))
            .boxed(),
        LogFormat::Json => {
            let dispatch = Arc::new(OnceLock::new());
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(CloudLogging {
                    project: settings.project.clone(),
                    dispatch: Arc::clone(&dispatch),
                })
                .with_writer(make_writer)
                .and_then(DispatchSlot(dispatch))
                .boxed()
        }
    }
}

/// Hands [`CloudLogging`] the dispatcher it runs in: OpenTelemetry's layer answers for a span's
/// context only through it, and a formatter cannot ask for the current one while an event is
/// being dispatched.
struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl<S: Subscriber> Layer<S> for DispatchSlot {
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.0.set(dispatch.downgrade());
    }
}

/// A writer factory whose writers mask each line before passing it on. The fmt layer writes
/// one whole formatted event per call, so a secret is never split across two writes. Colour
/// codes are stepped over, so a value that follows one is masked alone and the code survives.
#[derive(Debug, Clone)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter(self.0.make_writer_for(meta))
    }
}

/// See [`Redacting`].
#[derive(Debug)]
pub struct RedactingWriter<W>(W);

impl<W: io::Write> io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact_line(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// [`redact`] on each stretch of `line` between ANSI escape sequences (`ESC [ ... m`), which
/// colour field names and levels but never split a value.
fn redact_line(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\x1b') {
        return redact(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(esc) = rest.find('\x1b') {
        out.push_str(&redact(&rest[..esc]));
        let code = escape_len(&rest.as_bytes()[esc..]);
        out.push_str(&rest[esc..esc + code]);
        rest = &rest[esc + code..];
    }
    out.push_str(&redact(rest));
    out.into()
}

/// The length of the escape sequence at the start of `bytes` (which starts with ESC): a CSI
/// sequence runs to its final byte (`@` to `~`); any other escape is the ESC alone.
fn escape_len(bytes: &[u8]) -> usize {
    if bytes.get(1) != Some(&b'[') {
        return 1;
    }
    bytes[2..]
        .iter()
        .position(|b| (0x40..=0x7e).contains(b))
        .map_or(bytes.len(), |i| i + 3)
}

/// Formats an event as one Cloud Logging JSON line. Paired with [`JsonFields`], which keeps
/// each span's fields as JSON for the `spans` key; built by [`layer`].
#[derive(Debug)]
struct CloudLogging {
    /// `GOOGLE_CLOUD_PROJECT`, for trace names.
    project: Option<String>,
    /// The dispatcher, once registered, to look up OpenTelemetry span contexts.
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<S, N> FormatEvent<S, N> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        let mut fields = fields.0;
        let message = match fields.remove("message") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        // Events from the `log` crate carry their origin as fields.
        let target = match fields.remove("log.target") {
            Some(Value::String(t)) => t,
            _ => meta.target().to_owned(),
        };
        let file = fields
            .remove("log.file")
            .and_then(|v| v.as_str().map(str::to_owned));
        let line = fields.remove("log.line").and_then(|v| v.as_u64());
        fields.remove("log.module_path");

        let mut entry = Map::new();
        entry.insert("severity".into(), severity(meta.level()).into());
        entry.insert("message".into(), message.into());
        entry.insert(
            "timestamp".into(),
            Utc::now()
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .into(),
        );
        entry.insert("target".into(), target.into());
        if let Some(file) = file.as_deref().or(meta.file()) {
            let mut source = Map::new();
            source.insert("file".into(), file.into());
            if let Some(line) = line.or(meta.line().map(u64::from)) {
                // LogEntrySourceLocation.line is an int64, a string in proto3's JSON.
                source.insert("line".into(), line.to_string().into());
            }
            entry.insert(SOURCE_KEY.into(), Value::Object(source));
        }
        if let Some(scope) = ctx.event_scope() {
            let mut spans = Vec::new();
            let mut ids = Vec::new();
            for span in scope.from_root() {
                ids.push(span.id());
                let ext = span.extensions();
                let mut object = Map::new();
                object.insert("name".into(), span.name().into());
                if let Some(formatted) = ext.get::<FormattedFields<N>>() {
                    match serde_json::from_str::<Map<String, Value>>(formatted) {
                        Ok(span_fields) => {
                            for (k, v) in span_fields {
                                object.entry(k).or_insert(v);
                            }
                        }
                        Err(_) if !formatted.is_empty() => {
                            object.insert("fields".into(), formatted.to_string().into());
                        }
                        Err(_) => {}
                    }
                }
                spans.push(Value::Object(object));
            }
            // Asked with no span's extensions borrowed: OpenTelemetry's layer locks them.
            let trace = self
                .dispatch
                .get()
                .and_then(WeakDispatch::upgrade)
                .and_then(|dispatch| ids.iter().rev().find_map(|id| otel_ids(&dispatch, id)));
            let mut spans = Value::Array(spans);
            mask(&mut spans);
            entry.insert("spans".into(), spans);
            if let Some((trace_id, span_id)) = trace {
                match &self.project {
                    Some(p) => {
                        entry.insert(
                            TRACE_KEY.into(),
                            format!("projects/{p}/traces/{trace_id}").into(),
                        );
                    }
                    None => {
                        entry.insert("trace_id".into(), trace_id.into());
                    }
                }
                entry.insert(SPAN_ID_KEY.into(), span_id.into());
            }
        }
        for (name, value) in fields {
            let key = if RESERVED.contains(&name.as_str()) {
                format!("field.{name}")
            } else {
                name
            };
            entry.insert(key, value);
        }
        let mut entry = Value::Object(entry);
        mask(&mut entry);
        let line = serde_json::to_string(&entry).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Cloud Logging's `LogSeverity` of a tracing level (it has no TRACE).
fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

/// The trace and span ids (lowercase hex) of span `id`, if OpenTelemetry's layer is installed
/// and traces it.
fn otel_ids(dispatch: &Dispatch, id: &span::Id) -> Option<(String, String)> {
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| {
        (
            context.trace_id().to_string(),
            context.span_id().to_string(),
        )
    })
}

/// Masks every string in `value`, keys excepted (they are field names from the code).
fn mask(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(masked) = redact(s) {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        Value::Object(map) => map.values_mut().for_each(mask),
        _ => {}
    }
}

/// An event's fields as JSON values (strings masked later, with the rest of the line).
#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let text = crate::error_text::error_chain(value);
        self.0.insert(field.name().into(), text.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        fn json_lines(&self) -> Vec<Value> {
            self.text()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect()
        }
    }

    fn settings(format: LogFormat, project: Option<&str>) -> LogSettings {
        LogSettings {
            format,
            project: project.map(str::to_owned),
        }
    }

    #[test]
    fn formats_parse() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!("Json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("yaml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn json_lines_have_cloud_loggings_shape() {
        let out = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(layer(
            &settings(LogFormat::Json, None),
            out.clone(),
            false,
        ));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", method = "POST", user = "bob@example.com");
            let _enter = span.enter();
            tracing::warn!(
                task_id = 42,
                ok = false,
                ratio = 0.5,
                target = "x",
                "slow for {}",
                "a@b.io"
            );
            tracing::trace!("not a severity of its own");
        });
        let lines = out.json_lines();
        assert_eq!(lines.len(), 2, "{}", out.text());
        let line = &lines[0];
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "slow for [email]");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["task_id"], 42);
        assert_eq!(line["ok"], false);
        assert_eq!(line["ratio"], 0.5);
        // A field named like a reserved key does not overwrite it.
        assert_eq!(line["field.target"], "x");
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
        assert_eq!(
            line["spans"],
            serde_json::json!([{"name": "request", "method": "POST", "user": "[email]"}])
        );
        assert!(
            line[SOURCE_KEY]["file"]
                .as_str()
                .unwrap()
                .ends_with("logging.rs")
        );
        assert!(line.get(TRACE_KEY).is_none(), "no OpenTelemetry span here");
        assert_eq!(lines[1]["severity"], "DEBUG");
    }

    #[test]
    fn json_lines_carry_the_opentelemetry_trace() {
        let provider = SdkTracerProvider::builder().build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let out = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(otel).with(layer(
            &settings(LogFormat::Json, Some("my-project")),
            out.clone(),
            false,
        ));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer");
            let _outer = outer.enter();
            tracing::info!("in outer");
            let inner = tracing::info_span!("inner");
            let _inner = inner.enter();
            tracing::info!("in inner");
        });
        let lines = out.json_lines();
        assert_eq!(lines.len(), 2, "{}", out.text());
        let trace = lines[0][TRACE_KEY].as_str().unwrap();
        let id = trace.strip_prefix("projects/my-project/traces/").unwrap();
        assert_eq!(id.len(), 32, "{trace}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{trace}");
        assert_eq!(lines[1][TRACE_KEY], trace, "one trace for both spans");
        let outer = lines[0][SPAN_ID_KEY].as_str().unwrap();
        let inner = lines[1][SPAN_ID_KEY].as_str().unwrap();
        assert_eq!(outer.len(), 16);
        assert_ne!(outer, inner, "each line names its own span");
    }

    #[test]
    fn without_a_project_the_trace_id_stands_alone() {
        let provider = SdkTracerProvider::builder().build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let out = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(otel).with(layer(
            &settings(LogFormat::Json, None),
            out.clone(),
            false,
        ));
        tracing::subscriber::with_default(subscriber, || {
            let _span = tracing::info_span!("work").entered();
            tracing::info!("hello");
        });
        let line = &out.json_lines()[0];
        assert_eq!(line["trace_id"].as_str().unwrap().len(), 32);
        assert!(line.get(TRACE_KEY).is_none());
    }

    #[test]
    fn text_lines_are_masked_whole() {
        let out = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(layer(
            &settings(LogFormat::Text, None),
            out.clone(),
            false,
        ));
        tracing::subscriber::with_default(subscriber, || {
            let _span = tracing::info_span!("call", key = "sk-proj-abcdefghijklmnop").entered();
            tracing::info!(phone = "+81-90-1234-5678", "header was Bearer abc.def");
        });
        let text = out.text();
        assert!(text.contains("[api-key]"), "{text}");
        assert!(text.contains("[phone]"), "{text}");
        assert!(text.contains("Bearer [token]"), "{text}");
        assert!(
            !text.contains("abcdefghijklmnop") && !text.contains("1234-5678"),
            "{text}"
        );
    }

    #[test]
    fn coloured_text_lines_keep_their_colour_codes() {
        let out = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(layer(
            &settings(LogFormat::Text, None),
            out.clone(),
            true,
        ));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(user = %"bob@example.com", "hello");
        });
        let text = out.text();
        assert!(text.contains("\x1b["), "coloured: {text:?}");
        assert!(text.contains("m[email]"), "{text:?}");
        assert!(
            !text.contains("bob") && !text.contains("\x1b[["),
            "{text:?}"
        );
        assert_eq!(
            redact_line("\x1b[2m=\x1b[0mbob@example.com"),
            "\x1b[2m=\x1b[0m[email]"
        );
        assert_eq!(redact_line("cut \x1b[3"), "cut \x1b[3");
    }
}
