//! `spawn_app`: builds the real application on port 0 in either mode.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ai_integration_service::api::proto::task_service_client::TaskServiceClient;
use ai_integration_service::app::Application;
use ai_integration_service::auth::{JwtKeys, Role};
use ai_integration_service::config::{Config, Secret};
use ai_integration_service::domain::{Tier, UserId};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::support;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

/// Which backends a test app uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Clustered,
}

/// A running application and clients for it.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    keys: JwtKeys,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the embedded data directory alive.
    _dir: Option<tempfile::TempDir>,
    /// Clustered resources to clean up.
    pg: Option<String>,
    redis: Option<(String, String)>,
    /// The environment the app was built from, so it can be restarted on the same storage.
    pub vars: HashMap<String, String>,
    /// `http://127.0.0.1:{METRICS_PORT}` when one is configured.
    pub metrics_base: Option<String>,
}

/// Starts an app in `mode` with extra environment `vars`. `None` when the mode's servers are
/// unreachable outside CI (the test is then skipped).
pub async fn spawn_app(mode: Mode, vars: &[(&str, &str)]) -> Option<TestApp> {
    let mut env: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("JWT_SECRET", JWT_SECRET),
        ("RETRY_BASE_DELAY", "20ms"),
        ("SHUTDOWN_GRACE_PERIOD", "2s"),
        // The suites drive the service with echo tasks, many per user, in both modes.
        ("ENABLE_ECHO", "true"),
        ("MAX_ACTIVE_TASKS_PER_USER", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut dir = None;
    let mut pg = None;
    let mut redis = None;
    match mode {
        Mode::Embedded => {
            let d = tempfile::tempdir().expect("tempdir");
            env.insert("DATA_DIR".into(), d.path().display().to_string());
            dir = Some(d);
        }
        Mode::Clustered => {
            let db = support::pg_url().await?;
            let url = support::redis_url().await?;
            let prefix = support::redis_prefix();
            env.insert("DATABASE_URL".into(), db.clone());
            env.insert("REDIS_URL".into(), url.clone());
            env.insert("REDIS_KEY_PREFIX".into(), prefix.clone());
            env.insert("DATABASE_MAX_CONNECTIONS".into(), "8".into());
            pg = Some(db);
            redis = Some((url, prefix));
        }
    }
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    let mut app = start(env).await;
    app._dir = dir;
    app.pg = pg;
    app.redis = redis;
    Some(app)
}

/// Builds and serves an app from `env`.
pub async fn start(env: HashMap<String, String>) -> TestApp {
    let config = Config::from_vars(&env).expect("valid test config");
    let app = Application::build(config).await.expect("app builds");
    let port = app.port();
    let metrics_base = app.metrics_port().map(|p| format!("http://127.0.0.1:{p}"));
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        keys: JwtKeys::new(&Secret::new(JWT_SECRET)),
        shutdown,
        server: Some(server),
        _dir: None,
        pg: None,
        redis: None,
        vars: env,
        metrics_base,
    }
}

impl TestApp {
    /// A token for `user`.
    pub fn token(&self, user: &str) -> String {
        self.token_with(user, Role::User, Duration::from_secs(3600))
    }

    /// A token with any role and lifetime.
    pub fn token_with(&self, user: &str, role: Role, ttl: Duration) -> String {
        self.token_with_tier(user, role, None, ttl)
    }

    /// A token with a `tier` claim.
    pub fn token_with_tier(
        &self,
        user: &str,
        role: Role,
        tier: Option<Tier>,
        ttl: Duration,
    ) -> String {
        self.keys
            .issue_with_tier(&UserId::parse(user).unwrap(), role, tier, ttl)
            .unwrap()
    }

    /// A gRPC client.
    pub async fn grpc(&self) -> TaskServiceClient<Channel> {
        TaskServiceClient::connect(self.base.clone())
            .await
            .expect("gRPC connects")
    }

    /// `POST /api/v1/tasks` as `user`; returns status and JSON body.
    pub async fn submit(&self, user: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/tasks", self.base))
            .bearer_auth(self.token(user))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET` a path as `user`; returns status and JSON body.
    pub async fn get(&self, user: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token(user))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls a task until its status is terminal; panics after `within`.
    pub async fn wait_terminal(&self, user: &str, id: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.get(user, &format!("/api/v1/tasks/{id}")).await;
            assert_eq!(status, 200, "{body}");
            if matches!(
                body["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} not finished: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Redis URL and key prefix of a clustered app.
    pub fn redis(&self) -> Option<(String, String)> {
        self.redis.clone()
    }

    /// Graceful shutdown; returns how long it took. Keeps the storage for a restart.
    pub async fn stop(&mut self) -> Duration {
        let started = std::time::Instant::now();
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("clean shutdown");
        }
        started.elapsed()
    }

    /// Stops this app and starts a new one on the same storage (a restart).
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut next = start(self.vars.clone()).await;
        next._dir = self._dir.take();
        next.pg = self.pg.take();
        next.redis = self.redis.take();
        next
    }

    /// [`restart`](Self::restart) on the same port, as a server restarted behind an address
    /// its clients keep using.
    pub async fn restart_on_same_port(mut self) -> TestApp {
        let port = self.base.rsplit(':').next().unwrap_or("0").to_owned();
        self.vars.insert("PORT".into(), port);
        self.restart().await
    }

    /// Stops the app and removes its database and keys.
    pub async fn cleanup(mut self) {
        self.stop().await;
        if let Some(db) = self.pg.take() {
            support::drop_pg_database(&db).await;
        }
        if let Some((url, prefix)) = self.redis.take() {
            support::cleanup_redis_prefix(&url, &prefix).await;
        }
    }
}

/// Runs an async test body against both modes: `name_embedded` and `name_clustered`.
macro_rules! both_modes {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                $body(crate::helpers::Mode::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn clustered() {
                $body(crate::helpers::Mode::Clustered).await;
            }
        }
    };
}
pub(crate) use both_modes;

/// `(method, path)` of every route in `src/api/http/mod.rs` (method in lower case), read from
/// its source: a route added there without an OpenAPI annotation fails
/// `openapi::every_route_is_in_the_document`, and one without a row of the authorisation
/// matrix fails `authz_matrix::every_route_has_a_row_and_every_row_a_route`.
pub fn router_routes() -> BTreeSet<(String, String)> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/http/mod.rs");
    let src = std::fs::read_to_string(file).expect("read the router");
    let method = regex::Regex::new(r"\b(get|post|put|delete|patch)\(").unwrap();
    let mut routes = BTreeSet::new();
    for chunk in src.split(".route(").skip(1) {
        let chunk = chunk.trim_start();
        let rest = chunk
            .strip_prefix('"')
            .expect("a route's path is a literal");
        let (path, rest) = rest.split_once('"').unwrap();
        // The method router: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("balanced parentheses");
        for m in method.captures_iter(&rest[..end]) {
            routes.insert((m[1].to_owned(), path.to_owned()));
        }
    }
    assert!(routes.len() > 50, "read too few routes: {routes:?}");
    routes
}
