//! Configuration from environment variables, parsed all at once so every bad value is reported
//! together.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

mod chat;
mod compat;
mod limits;
mod pipelines;
mod providers;
mod queues;
mod traces;

pub use crate::telemetry::traces::{DEFAULT_SERVICE_NAME, OtlpProtocol, TracesConfig};
pub use chat::ChatConfig;
pub use limits::EdgeLimits;
pub use pipelines::PipelineSettings;
pub use providers::{AiConfig, PROVIDERS, ProviderSettings, ProviderVars};

use crate::telemetry::logging::{LogFormat, LogSettings};

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where tasks, queue and events live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file under `data_dir`, in-process queue and pub/sub.
    Embedded {
        /// Directory of `tasks.db`.
        data_dir: PathBuf,
    },
    /// PostgreSQL and Redis shared by every instance.
    Clustered {
        /// `postgres://...`
        database_url: Secret,
        /// `redis://...`
        redis_url: Secret,
    },
}

/// Every setting of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`: address to bind.
    pub host: IpAddr,
    /// `PORT`: one port for HTTP/1.1, WebSocket and gRPC (h2c).
    pub port: u16,
    /// `METRICS_PORT`: a second port serving only `/metrics` (also on `PORT`), if set.
    pub metrics_port: Option<u16>,
    /// `METRICS_ENABLED` (default true): false installs no recorder, so every metric call is a
    /// no-op and `/metrics` answers 404 (the overhead benchmark's baseline).
    pub metrics_enabled: bool,
    /// Storage and queue backends, from `DATABASE_URL` / `REDIS_URL` / `DATA_DIR`.
    pub backend: Backend,
    /// `DATABASE_MAX_CONNECTIONS`: PostgreSQL pool size.
    pub database_max_connections: u32,
    /// `REDIS_KEY_PREFIX`: namespace of every Redis key, so deployments (and tests) can share a
    /// Redis.
    pub redis_key_prefix: String,
    /// `JWT_SECRET`: HS256 key. `None` in embedded mode means "generate one at start".
    pub jwt_secret: Option<Secret>,
    /// What tokens must show besides a signature, and an identity provider's keys.
    pub jwt: JwtConfig,
    /// `WORKER_POOL_SIZE`: tasks run concurrently by this instance (the adaptive limit's top).
    pub worker_pool_size: usize,
    /// `CLAIM_BATCH_SIZE` (seed 003: `JOB_QUEUE_BATCH_SIZE`): most tasks one claim takes.
    pub claim_batch_size: usize,
    /// `WORKER_POOL_MIN`: the adaptive limit's floor.
    pub worker_pool_min: usize,
    /// `ADAPTIVE_POOL`: whether the limit follows CPU and memory load.
    pub adaptive_pool: bool,
    /// `DIRECT_DISPATCH`: a submit that finds the queue drained and a free worker slot starts
    /// its task at once instead of queueing it.
    pub direct_dispatch: bool,
    /// `QUEUES` and `QUEUE_ROUTE_<TYPE>`: the named queues and which task type goes where.
    pub queues: crate::queue::QueueSet,
    /// AI providers, the router and its guards.
    pub ai: AiConfig,
    /// `MAX_QUEUE_SIZE`: submits are refused while this many tasks wait.
    pub max_queue_size: u64,
    /// `TASK_TIMEOUT`: longest one attempt may run.
    pub task_timeout: Duration,
    /// `TASK_TIMEOUT_<TYPE>` (e.g. `TASK_TIMEOUT_SUMMARIZE=60s`): per-type overrides.
    pub task_timeouts: std::collections::HashMap<crate::domain::TaskType, Duration>,
    /// `MAX_TASK_TIMEOUT`: the largest `timeout_seconds` a request may ask for.
    pub max_task_timeout: Duration,
    /// `ENABLE_ECHO`: whether the development type `echo` is served (default: embedded mode
    /// only).
    pub enable_echo: bool,
    /// `MAX_USER_PRIORITY`: the highest priority a user's task gets, asked for or raised by
    /// the user's tier; admins may use up to 10.
    pub max_user_priority: crate::domain::Priority,
    /// `JOB_QUEUE_MAX_RETRIES`: retries after the first attempt.
    pub max_retries: u32,
    /// `RETRY_BASE_DELAY`: first retry delay; doubles each attempt (1 s, 2 s, 4 s).
    pub retry_base_delay: Duration,
    /// `LEASE_DURATION`: how long a claim holds a task without renewal.
    pub lease_duration: Duration,
    /// `SHUTDOWN_GRACE_PERIOD`: on SIGTERM, how long running tasks may finish.
    pub shutdown_grace_period: Duration,
    /// `RECONCILE_INTERVAL`: how often the queue is checked against the database.
    pub reconcile_interval: Duration,
    /// `USER_SUBMIT_RATE`: per-user submit rate limit (e.g. `100/s`), unset for none.
    pub user_submit_rate: Option<crate::ratelimit::Rate>,
    /// `MAX_ACTIVE_TASKS_PER_USER`: pending plus processing tasks one user may have; 0 for no
    /// limit.
    pub max_active_tasks_per_user: u64,
    /// `NOTIFICATION_RETENTION`: how long task events are kept for resuming streams.
    pub notification_retention: Duration,
    /// `NOTIFICATION_KEEPALIVE`: interval of SSE keepalive comments and WebSocket pings.
    pub notification_keepalive: Duration,
    /// `MAX_CONNECTIONS`: live event connections (WebSocket, SSE, gRPC streams) per instance.
    pub max_connections: usize,
    /// `NOTIFICATION_BUFFER`: events one connection may have waiting before it is cut off as
    /// a slow consumer.
    pub notification_buffer: usize,
    /// `STREAM_TICKET_TTL`: how long a stream ticket (`POST /api/v1/events/ticket`) stays
    /// usable.
    pub stream_ticket_ttl: Duration,
    /// `PIPELINES_FILE` and `PIPELINE_*`: how pipeline sessions run.
    pub pipelines: PipelineSettings,
    /// `LOG_FORMAT` (`text` or `json`) and `GOOGLE_CLOUD_PROJECT` (for trace names in JSON
    /// lines).
    pub logging: LogSettings,
    /// OpenTelemetry trace export (`OTEL_EXPORTER_OTLP_ENDPOINT` and the standard `OTEL_*`
    /// variables); `None` when off, the default.
    pub traces: Option<TracesConfig>,
    /// `EVENT_SNAPSHOT_EVERY` and `EVENT_SNAPSHOT_KEEP` (seed 002: 100 and 3): an event
    /// stream's snapshot is due every so many events, and so many are kept per stream.
    pub snapshot_policy: crate::domain::eventstore::SnapshotPolicy,
    /// The event store's projections.
    pub projections: ProjectionConfig,
    /// Chat sessions (`CHAT_*`).
    pub chat: ChatConfig,
    /// Header size, slow clients, per-user rate and streams (docs/security.md).
    pub limits: EdgeLimits,
}

/// How this instance takes part in the projections of the event store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionConfig {
    /// `PROJECTIONS_ENABLED` (default true): whether this instance runs projections (it serves
    /// the read models either way).
    pub enabled: bool,
    /// `PROJECTION_BATCH_SIZE` (default 500): most events folded in one transaction.
    pub batch_size: u32,
    /// `PROJECTION_LEASE` (default 5s): how long a dead instance keeps a projection from the
    /// others.
    pub lease: Duration,
    /// `PROJECTION_LAG_THRESHOLD` (default 30s): past this, `/readyz` names the projection
    /// (still answering 200).
    pub lag_threshold: Duration,
}

/// Token checks beyond the signature, and where an identity provider publishes its keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JwtConfig {
    /// `JWT_ISSUER`: the `iss` every token must carry (issued tokens get it).
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: an `aud` every token must name (issued tokens get it).
    pub audience: Option<String>,
    /// `JWT_LEEWAY` (default 5s): clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// `JWT_JWKS_URL`: an identity provider's JWKS (RS256/ES256 tokens, keys by `kid`).
    pub jwks_url: Option<String>,
    /// `JWT_JWKS_FILE`: the same, from a file.
    pub jwks_file: Option<std::path::PathBuf>,
}

/// One problem with one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// All problems found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  {}: {}", p.var, p.message)).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<ConfigProblem>);

/// Reads variables from a map, collecting problems instead of stopping at the first.
struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    problems: Vec<ConfigProblem>,
}

impl Reader<'_> {
    fn raw(&self, var: &'static str) -> Option<&str> {
        self.vars
            .get(var)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    fn problem(&mut self, var: &'static str, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            var,
            message: message.into(),
        });
    }

    fn parse<T: std::str::FromStr>(&mut self, var: &'static str, default: T, what: &str) -> T {
        match self.raw(var) {
            None => default,
            Some(raw) => match raw.parse() {
                Ok(v) => v,
                Err(_) => {
                    self.problem(var, format!("{raw:?} is not {what}"));
                    default
                }
            },
        }
    }

    fn range<T>(&mut self, var: &'static str, default: T, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + Copy + fmt::Display,
    {
        let what = format!("a number from {min} to {max}");
        let v = self.parse(var, default, &what);
        if v < min || v > max {
            self.problem(var, format!("{v} is out of range; expected {what}"));
            return default;
        }
        v
    }

    fn duration(&mut self, var: &'static str, default: Duration, min: Duration) -> Duration {
        match self.raw(var) {
            None => default,
            Some(raw) => match parse_duration(raw) {
                Some(d) if d >= min => d,
                Some(_) => {
                    self.problem(
                        var,
                        format!(
                            "{raw:?} is shorter than {}",
                            humantime::format_duration(min)
                        ),
                    );
                    default
                }
                None => {
                    self.problem(
                        var,
                        format!("{raw:?} is not a duration such as 300s, 5m or 1500ms"),
                    );
                    default
                }
            },
        }
    }
}

/// Accepts `300s`, `5m`, `1h 30m`, `1500ms`, or bare seconds (`300`).
pub fn parse_duration(raw: &str) -> Option<Duration> {
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    humantime::parse_duration(raw).ok()
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads a map of variables; used by `from_env` and tests.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut r = Reader {
            vars,
            problems: Vec::new(),
        };
        let host = r.parse("HOST", IpAddr::from([0, 0, 0, 0]), "an IP address");
        let port = r.parse("PORT", 8080u16, "a port number (0-65535)");
        let metrics_port = r
            .raw("METRICS_PORT")
            .is_some()
            .then(|| r.parse("METRICS_PORT", 0u16, "a port number (0-65535)"));
        let database_url = r.raw("DATABASE_URL").map(str::to_owned);
        let redis_url = r.raw("REDIS_URL").map(str::to_owned);
        let backend = match (database_url, redis_url) {
            (None, None) => Backend::Embedded {
                data_dir: PathBuf::from(r.raw("DATA_DIR").unwrap_or("./data")),
            },
            (Some(db), Some(redis)) => {
                if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
                    r.problem(
                        "DATABASE_URL",
                        "must start with postgres:// or postgresql://",
                    );
                }
                if !(redis.starts_with("redis://") || redis.starts_with("rediss://")) {
                    r.problem("REDIS_URL", "must start with redis:// or rediss://");
                }
                Backend::Clustered {
                    database_url: Secret::new(db),
                    redis_url: Secret::new(redis),
                }
            }
            (Some(_), None) => {
                r.problem(
                    "REDIS_URL",
                    "must be set when DATABASE_URL is (clustered mode needs both)",
                );
                Backend::Embedded {
                    data_dir: PathBuf::from("./data"),
                }
            }
            (None, Some(_)) => {
                r.problem(
                    "DATABASE_URL",
                    "must be set when REDIS_URL is (clustered mode needs both)",
                );
                Backend::Embedded {
                    data_dir: PathBuf::from("./data"),
                }
            }
        };
        let database_max_connections = r.range("DATABASE_MAX_CONNECTIONS", 20u32, 1, 1000);
        let redis_key_prefix = r.raw("REDIS_KEY_PREFIX").unwrap_or("ais").to_owned();
        if redis_key_prefix.contains(char::is_whitespace) {
            r.problem("REDIS_KEY_PREFIX", "must not contain whitespace");
        }
        let jwt_secret = r.raw("JWT_SECRET").map(Secret::new);
        match &jwt_secret {
            Some(s) if secret_keys(s.expose()).any(|k| k.len() < 32) => {
                r.problem(
                    "JWT_SECRET",
                    "every key (comma-separated, current first) must be at least 32 bytes \
                     (HS256)",
                );
            }
            None if matches!(backend, Backend::Clustered { .. }) => {
                r.problem(
                    "JWT_SECRET",
                    "must be set in clustered mode (all instances share it)",
                );
            }
            _ => {}
        }
        let jwt = JwtConfig {
            issuer: r.raw("JWT_ISSUER").map(str::to_owned),
            audience: r.raw("JWT_AUDIENCE").map(str::to_owned),
            leeway: r.duration("JWT_LEEWAY", Duration::from_secs(5), Duration::ZERO),
            jwks_url: r.raw("JWT_JWKS_URL").map(str::to_owned),
            jwks_file: r.raw("JWT_JWKS_FILE").map(std::path::PathBuf::from),
        };
        if jwt.jwks_url.is_some() && jwt.jwks_file.is_some() {
            r.problem(
                "JWT_JWKS_FILE",
                "set JWT_JWKS_URL or JWT_JWKS_FILE, not both",
            );
        }
        if jwt.leeway > Duration::from_secs(300) {
            r.problem("JWT_LEEWAY", "must be at most 5m (a small clock skew)");
        }
        if let Some(url) = &jwt.jwks_url
            && !url.starts_with("https://")
            && !url.starts_with("http://")
        {
            r.problem("JWT_JWKS_URL", "must be an http(s) URL");
        }
        let worker_pool_size = r.range(r.aliased("WORKER_POOL_SIZE"), 10usize, 1, 10_000);
        let claim_batch_size = r.range(r.aliased("CLAIM_BATCH_SIZE"), 256usize, 1, 10_000);
        let worker_pool_min = r.range("WORKER_POOL_MIN", 1usize, 1, 10_000);
        if worker_pool_min > worker_pool_size {
            r.problem(
                "WORKER_POOL_MIN",
                format!("{worker_pool_min} is above WORKER_POOL_SIZE ({worker_pool_size})"),
            );
        }
        let adaptive_pool = r.flag("ADAPTIVE_POOL", true);
        let direct_dispatch = r.flag("DIRECT_DISPATCH", true);
        let queues = r.queues(worker_pool_size);
        let max_queue_size = r.range("MAX_QUEUE_SIZE", 10_000u64, 1, 100_000_000);
        let task_timeout = r.duration(
            "TASK_TIMEOUT",
            Duration::from_secs(300),
            Duration::from_millis(100),
        );
        let mut task_timeouts = HashMap::new();
        for t in crate::domain::TaskType::ALL {
            let var: &'static str = match t {
                crate::domain::TaskType::Echo => "TASK_TIMEOUT_ECHO",
                crate::domain::TaskType::Summarize => "TASK_TIMEOUT_SUMMARIZE",
                crate::domain::TaskType::ExtractContent => "TASK_TIMEOUT_EXTRACT_CONTENT",
                crate::domain::TaskType::ValidateSummary => "TASK_TIMEOUT_VALIDATE_SUMMARY",
                crate::domain::TaskType::ItemInfoGeneration => "TASK_TIMEOUT_ITEM_INFO_GENERATION",
                crate::domain::TaskType::ImageGeneration => "TASK_TIMEOUT_IMAGE_GENERATION",
                crate::domain::TaskType::TestCustomization => "TASK_TIMEOUT_TEST_CUSTOMIZATION",
                // Not in ALL: chat turns are bounded by AI_REQUEST_TIMEOUT.
                crate::domain::TaskType::Chat => continue,
                crate::domain::TaskType::Prompt => "TASK_TIMEOUT_PROMPT",
            };
            if r.raw(var).is_some() {
                task_timeouts.insert(t, r.duration(var, task_timeout, Duration::from_millis(100)));
            }
        }
        let max_task_timeout = r.duration(
            "MAX_TASK_TIMEOUT",
            Duration::from_secs(3600),
            Duration::from_secs(1),
        );
        let metrics_enabled = r.flag("METRICS_ENABLED", true);
        let enable_echo = r.flag("ENABLE_ECHO", matches!(backend, Backend::Embedded { .. }));
        let max_user_priority = r.range("MAX_USER_PRIORITY", 9i64, 1, 10);
        let max_user_priority =
            crate::domain::Priority::new(max_user_priority).unwrap_or(crate::domain::Priority::MAX);
        let max_retries = r.range("JOB_QUEUE_MAX_RETRIES", 3u32, 0, 100);
        let retry_base_delay = r.duration(
            "RETRY_BASE_DELAY",
            Duration::from_secs(1),
            Duration::from_millis(1),
        );
        let lease_duration = r.duration(
            "LEASE_DURATION",
            Duration::from_secs(30),
            Duration::from_secs(1),
        );
        let shutdown_grace_period = r.duration(
            "SHUTDOWN_GRACE_PERIOD",
            Duration::from_secs(10),
            Duration::ZERO,
        );
        let reconcile_interval = r.duration(
            "RECONCILE_INTERVAL",
            Duration::from_secs(30),
            Duration::from_millis(100),
        );
        let user_submit_rate = r.user_submit_rate();
        let max_active_tasks_per_user =
            r.range("MAX_ACTIVE_TASKS_PER_USER", 100u64, 0, 100_000_000);
        let ai = r.ai();
        let notification_retention = r.duration(
            "NOTIFICATION_RETENTION",
            Duration::from_secs(24 * 3600),
            Duration::from_secs(1),
        );
        let notification_keepalive = r.duration(
            "NOTIFICATION_KEEPALIVE",
            Duration::from_secs(30),
            Duration::from_millis(50),
        );
        let max_connections = r.range("MAX_CONNECTIONS", 1000usize, 1, 1_000_000);
        let notification_buffer = r.range("NOTIFICATION_BUFFER", 1024usize, 1, 1_000_000);
        let stream_ticket_ttl = r.duration(
            "STREAM_TICKET_TTL",
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        let traces = r.traces();
        let pipelines = r.pipelines();

        let logging = LogSettings {
            format: match r.raw("LOG_FORMAT").map(str::parse::<LogFormat>) {
                None => LogFormat::default(),
                Some(Ok(format)) => format,
                Some(Err(message)) => {
                    r.problem("LOG_FORMAT", message);
                    LogFormat::default()
                }
            },
            project: r.raw("GOOGLE_CLOUD_PROJECT").map(str::to_owned),
        };

        let snapshot_every = r.range("EVENT_SNAPSHOT_EVERY", 100u64, 1, 1_000_000_000);
        let snapshot_keep = r.range("EVENT_SNAPSHOT_KEEP", 3u32, 1, 1_000);
        // Both are at least 1 once `range` has passed them.
        let snapshot_policy =
            crate::domain::eventstore::SnapshotPolicy::new(snapshot_every, snapshot_keep)
                .unwrap_or_default();
        let chat = r.chat();
        let limits = r.limits();
        let projections = ProjectionConfig {
            enabled: r.flag("PROJECTIONS_ENABLED", true),
            batch_size: r.range("PROJECTION_BATCH_SIZE", 500u32, 1, 10_000),
            lease: r.duration(
                "PROJECTION_LEASE",
                Duration::from_secs(5),
                Duration::from_millis(500),
            ),
            lag_threshold: r.duration(
                "PROJECTION_LAG_THRESHOLD",
                Duration::from_secs(30),
                Duration::from_millis(1),
            ),
        };

        if !r.problems.is_empty() {
            return Err(ConfigError(r.problems));
        }
        Ok(Self {
            host,
            port,
            metrics_port,
            backend,
            database_max_connections,
            redis_key_prefix,
            jwt_secret,
            jwt,
            worker_pool_size,
            claim_batch_size,
            worker_pool_min,
            adaptive_pool,
            direct_dispatch,
            queues,
            ai,
            max_queue_size,
            task_timeout,
            task_timeouts,
            max_task_timeout,
            enable_echo,
            metrics_enabled,
            max_user_priority,
            max_retries,
            retry_base_delay,
            lease_duration,
            shutdown_grace_period,
            reconcile_interval,
            user_submit_rate,
            max_active_tasks_per_user,
            notification_retention,
            notification_keepalive,
            max_connections,
            notification_buffer,
            stream_ticket_ttl,
            pipelines,
            logging,
            traces,
            snapshot_policy,
            projections,
            chat,
            limits,
        })
    }
}

/// The keys of a `JWT_SECRET` value: comma-separated, current first, blanks around each
/// ignored (a rotation lists the new key before the old).
pub fn secret_keys(secret: &str) -> impl Iterator<Item = &str> {
    secret.split(',').map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.worker_pool_size, 10);
        assert_eq!(c.max_queue_size, 10_000);
        assert_eq!(c.task_timeout, Duration::from_secs(300));
        assert_eq!(c.max_retries, 3);
        assert_eq!(c.notification_retention, Duration::from_secs(86_400));
        assert_eq!(c.notification_keepalive, Duration::from_secs(30));
        assert_eq!(c.max_connections, 1000);
        assert_eq!(c.stream_ticket_ttl, Duration::from_secs(60));
        assert_eq!(c.snapshot_policy.every(), 100);
        assert_eq!(c.snapshot_policy.keep(), 3);
        assert!(c.direct_dispatch);
        assert!(c.enable_echo, "echo is on in embedded mode");
        assert_eq!(c.max_user_priority.value(), 9);
        assert_eq!(c.max_active_tasks_per_user, 100);
        assert_eq!(
            c.backend,
            Backend::Embedded {
                data_dir: "./data".into()
            }
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Config::from_vars(&vars(&[
            ("PORT", "eighty"),
            ("WORKER_POOL_SIZE", "0"),
            ("TASK_TIMEOUT", "soon"),
            ("JWT_SECRET", "short"),
            ("USER_SUBMIT_RATE", "lots"),
            ("DATABASE_URL", "mysql://x"),
            ("DIRECT_DISPATCH", "sometimes"),
            ("EVENT_SNAPSHOT_EVERY", "0"),
        ]))
        .unwrap_err();
        let names: Vec<_> = err.0.iter().map(|p| p.var).collect();
        for var in [
            "PORT",
            "WORKER_POOL_SIZE",
            "TASK_TIMEOUT",
            "JWT_SECRET",
            "REDIS_URL",
            "DIRECT_DISPATCH",
            "EVENT_SNAPSHOT_EVERY",
        ] {
            assert!(names.contains(&var), "{var} missing from {err}");
        }
    }

    #[test]
    fn clustered_needs_both_urls_and_a_secret() {
        let c = Config::from_vars(&vars(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("REDIS_URL", "redis://localhost"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("TASK_TIMEOUT", "5m"),
            ("TASK_TIMEOUT_SUMMARIZE", "45s"),
        ]))
        .unwrap();
        assert_eq!(
            c.task_timeouts.get(&crate::domain::TaskType::Summarize),
            Some(&Duration::from_secs(45))
        );
        assert!(matches!(c.backend, Backend::Clustered { .. }));
        assert!(
            !c.enable_echo,
            "echo is off in clustered mode unless ENABLE_ECHO"
        );
        assert_eq!(c.task_timeout, Duration::from_secs(300));
        let err = Config::from_vars(&vars(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("REDIS_URL", "redis://localhost"),
        ]))
        .unwrap_err();
        assert_eq!(err.0[0].var, "JWT_SECRET");
    }

    #[test]
    fn log_format_is_text_json_or_an_error() {
        let c = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(c.logging.format, LogFormat::Text);
        assert_eq!(c.logging.project, None);
        let c = Config::from_vars(&vars(&[
            ("LOG_FORMAT", "JSON"),
            ("GOOGLE_CLOUD_PROJECT", "my-project"),
        ]))
        .unwrap();
        assert_eq!(c.logging.format, LogFormat::Json);
        assert_eq!(c.logging.project.as_deref(), Some("my-project"));
        let err = Config::from_vars(&vars(&[("LOG_FORMAT", "xml")])).unwrap_err();
        assert_eq!(err.0[0].var, "LOG_FORMAT");
        assert!(err.to_string().contains("expected text or json"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
