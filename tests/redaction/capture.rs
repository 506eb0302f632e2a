//! The process-wide subscriber of this binary: debug level, the service's own JSON and text
//! outputs side by side, each into a buffer.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use ai_integration_service::telemetry::logging::{self, LogFormat, LogSettings};
use serde_json::Value;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Debug for the service and what carries requests to it, less the wire-level chatter.
const FILTER: &str = "debug,h2=info,hyper=info,hyper_util=info,rustls=info,tungstenite=info,\
                      tokio_tungstenite=info,sqlx=info,tower=info";

/// Everything every app of this binary logged, in both formats.
pub struct Logs {
    json: Buffer,
    text: Buffer,
}

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
        String::from_utf8(self.0.lock().unwrap().clone()).expect("log lines are UTF-8")
    }
}

/// The captured logs; the first call installs the subscriber.
pub fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs {
            json: Buffer::default(),
            text: Buffer::default(),
        };
        let json = LogSettings {
            format: LogFormat::Json,
            project: Some("canary-project".into()),
        };
        let text = LogSettings {
            format: LogFormat::Text,
            project: None,
        };
        tracing_subscriber::registry()
            .with(EnvFilter::new(FILTER))
            .with(logging::layer(&json, logs.json.clone(), false))
            .with(logging::layer(&text, logs.text.clone(), false))
            .init();
        logs
    })
}

impl Logs {
    /// Every JSON line so far, each checked to be a Cloud Logging entry.
    pub fn json_lines(&self) -> Vec<Value> {
        self.json
            .text()
            .lines()
            .map(|line| {
                let entry: Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                for key in ["severity", "message", "timestamp", "target"] {
                    assert!(entry.get(key).is_some(), "no {key} in {line}");
                }
                entry
            })
            .collect()
    }

    /// Every text line so far.
    pub fn text(&self) -> String {
        self.text.text()
    }

    /// Panics if a canary is in either output, naming the line.
    pub fn assert_clean(&self, canaries: &[&str]) {
        let json = self.json.text();
        for (name, output) in [("json", &json), ("text", &self.text())] {
            for line in output.lines() {
                for canary in canaries {
                    assert!(
                        !line.contains(canary),
                        "{canary:?} leaked into a {name} log line: {line}"
                    );
                }
            }
        }
    }

    /// The JSON lines whose message is `message` and whose `field` is `value`, after waiting
    /// up to 5 s for one to be written.
    pub async fn wait_for(&self, message: &str, field: &str, value: &str) -> Vec<Value> {
        for _ in 0..250 {
            let found: Vec<Value> = self
                .json_lines()
                .into_iter()
                .filter(|l| l["message"] == message && l[field] == value)
                .collect();
            if !found.is_empty() {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no {message:?} line with {field} = {value:?}");
    }
}
