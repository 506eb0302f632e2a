//! Wiring: builds every part from [`Config`], serves, and shuts down in order.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};
use crate::auth::{JwksCache, JwksSource, JwtKeys, JwtSettings, Role};
use crate::bus::{EventBus, Hub, HubConfig, MemoryBus, RedisBus};
use crate::config::{Backend, Config, EdgeLimits, Secret};
use crate::domain::eventstore::SnapshotPolicy;
use crate::domain::payload::MAX_ECHO_DELAY_MS;
use crate::domain::{SubmitPolicy, TaskId, UserId, WorkerId};
use crate::execution::{MemoryCache, RedisCache};
use crate::group_commit::Gather;
use crate::providers::{MemoryBreakers, RedisBreakers};
use crate::queue::{MemoryQueue, QueueStates, RedisQueue, TaskQueue};
use crate::ratelimit::{MemoryRateLimiter, RateLimiter, RedisRateLimiter};
use crate::service::audit::AuditLog;
use crate::service::dashboard::StateSources;
use crate::service::pipeline::{Catalog, PipelineService, Scheduler, SchedulerLoop, StageEndTee};
use crate::service::projections::{FeedingPublisher, Finish, RunnerSettings, TaskFeed, task_feed};
use crate::service::{
    AdminService, MetricsService, MetricsSources, NotificationService, ProvidersService,
    QueueService, Readiness, Retention, SessionBook, StreamLimits, StreamQuota, StreamTickets,
    SubmitLimits, TaskService,
};
use crate::service::{
    EventStoreService, ProgressService, ProjectionManager, ProjectionsService, StoreHead,
};
use crate::store::audit::AuditStore;
use crate::store::eventstore::EventStore;
use crate::store::pipeline::PipelineStore;
use crate::store::progress::{ProgressReads, ProjectionStore};
use crate::store::{
    NotificationStore, PgTaskStore, QueueStore, SqliteTaskStore, TaskStore, WorkerDirectory,
};
use crate::telemetry::live::LiveCounters;
use crate::telemetry::live::board::{MemoryBoard, RedisBoard, SampleBoard};

mod chat;
mod dashboard;
mod runner;
mod serve;
use crate::worker::{
    AdaptiveLimit, DelayScheduler, Dispatch, PoolConfig, ProcLoad, QueueSync, Reaper, Reconciler,
    Slots, WorkerPool,
};

/// How often each instance reads the queues' paused flags from the database.
const QUEUE_SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// How often the adaptive pool samples CPU and memory.
const ADAPTIVE_INTERVAL: Duration = Duration::from_secs(1);

/// Group-commit loops for submits and for outcomes (transactions of each in flight at once).
/// One in both modes: SQLite has a single writer, and on PostgreSQL one loop puts more rows in
/// each commit, where four loops' commits competed for the WAL flush and the CPU (at 1,000
/// submits/s from 100 users, submit p99 5.5-5.9 ms against 11.5-12.9 ms; batched throughput
/// 9,270 against 7,511 tasks/s).
const WRITE_LOOPS: usize = 1;

/// How long a busy group-commit loop waits for more submits or outcomes before writing
/// (`batch::Gather`; tokio rounds it up to its next 1 ms tick). PostgreSQL only: each of its
/// statements costs the same whatever its size, so waiting for a bigger batch saves a third of
/// its CPU at 1,000 tasks/s. SQLite's write loop already merges every write waiting into one
/// transaction, so there it would only add latency.
const POSTGRES_GATHER: Duration = Duration::from_micros(100);

/// How often the embedded store checkpoints its WAL (a few MB at 1,000 tasks/s).
const SQLITE_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// How often each instance reads the event store's head, for appends made on other instances:
/// the most a projection or a live subscriber waits to hear of one (a single-row read).
const EVENT_HEAD_POLL: Duration = Duration::from_millis(20);

/// How often the hub checks the database for live events lost on the bus.
const HUB_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A built, bound, not yet serving service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// `METRICS_PORT`'s listener and its scrape-only router.
    metrics: Option<(TcpListener, axum::Router)>,
    /// Cancelled to start a graceful shutdown.
    shutdown: CancellationToken,
    /// Background loops (worker pool, scheduler, reconciler, group commit).
    background: TaskTracker,
    grace_period: Duration,
    /// Request head size and read timeout of the accept loop.
    limits: EdgeLimits,
}

/// The storage parts chosen by the configured mode.
struct Backends {
    store: Arc<dyn TaskStore>,
    /// The same database, seen as event history and sessions.
    notifications: Arc<dyn NotificationStore>,
    /// The same database, seen as named queues.
    queues: Arc<dyn QueueStore>,
    /// Live events between instances; the store publishes to it after each commit.
    bus: Arc<dyn EventBus>,
    queue: Arc<dyn TaskQueue>,
    /// Rate limits, shared by every instance in clustered mode.
    limiter: Arc<dyn RateLimiter>,
    /// The event store, in the same database.
    events: Arc<dyn EventStore>,
    /// The projections' checkpoints, leases and read models, in the same database.
    projections: Arc<dyn ProjectionStore>,
    /// The same, as readers see the read models.
    progress: Arc<dyn ProgressReads>,
    /// Tasks finished here, for the task feed.
    finishes: mpsc::Receiver<Finish>,
    /// Admin actions.
    audit: Arc<dyn AuditStore>,
    /// Chat sessions, in the same database.
    chat: Arc<dyn crate::store::chat::ChatStore>,
    /// Pipeline sessions, in the same database.
    pipelines: Arc<dyn PipelineStore>,
    /// Tasks that ended here, for the pipeline scheduler.
    stage_ends: mpsc::Receiver<TaskId>,
    /// What the AI side runs on.
    ai: runner::AiBackends,
    /// The `workers` table, for the dashboard.
    workers: Arc<dyn WorkerDirectory>,
    /// Where instances share their live counters with the dashboard.
    board: Arc<dyn SampleBoard>,
}

async fn connect(
    config: &Config,
    background: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<Backends> {
    Ok(match &config.backend {
        Backend::Embedded { data_dir } => {
            let bus = Arc::new(MemoryBus::new());
            let (tee, stage_ends) = StageEndTee::new(bus.clone());
            let (publisher, finishes) = FeedingPublisher::new(Arc::new(tee));
            let store = Arc::new(
                SqliteTaskStore::open(data_dir)
                    .await
                    .context("opening SQLite")?
                    .with_publisher(Arc::new(publisher)),
            );
            background.spawn(
                store
                    .checkpointer(SQLITE_CHECKPOINT_INTERVAL)
                    .run(shutdown.child_token()),
            );
            let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new());
            let projections = Arc::new(store.projection_store());
            Backends {
                chat: Arc::new(store.chat_store()),
                events: Arc::new(store.event_store(SnapshotPolicy::default())),
                projections: projections.clone(),
                progress: projections,
                finishes,
                audit: Arc::new(store.audit_store()),
                pipelines: store.clone(),
                stage_ends,
                store: store.clone(),
                notifications: store.clone(),
                queues: store.clone(),
                bus,
                queue: Arc::new(MemoryQueue::with_queues(config.queues.clone())),
                limiter: limiter.clone(),
                workers: store.clone(),
                board: Arc::new(MemoryBoard::new()),
                ai: runner::AiBackends {
                    usage: store,
                    breakers: Arc::new(MemoryBreakers::new(config.ai.breaker)),
                    limiter,
                    cache: Arc::new(MemoryCache::default()),
                },
            }
        }
        Backend::Clustered {
            database_url,
            redis_url,
        } => {
            let prefix = &config.redis_key_prefix;
            let bus = Arc::new(
                RedisBus::connect(
                    redis_url.expose(),
                    prefix,
                    background,
                    shutdown.child_token(),
                )
                .await
                .context("connecting to Redis")?,
            );
            let (tee, stage_ends) = StageEndTee::new(bus.clone());
            let (publisher, finishes) = FeedingPublisher::new(Arc::new(tee));
            let store = Arc::new(
                PgTaskStore::connect(database_url.expose(), config.database_max_connections)
                    .await
                    .context("connecting to PostgreSQL")?
                    .with_publisher(Arc::new(publisher)),
            );
            let redis = crate::ratelimit::managed_connection(redis_url.expose())
                .await
                .context("connecting to Redis")?;
            let limiter: Arc<dyn RateLimiter> =
                Arc::new(RedisRateLimiter::new(redis.clone(), prefix));
            let projections = Arc::new(store.projection_store());
            Backends {
                chat: Arc::new(store.chat_store()),
                events: Arc::new(store.event_store(SnapshotPolicy::default())),
                projections: projections.clone(),
                progress: projections,
                finishes,
                audit: Arc::new(store.audit_store()),
                pipelines: store.clone(),
                stage_ends,
                store: store.clone(),
                notifications: store.clone(),
                queues: store.clone(),
                bus,
                queue: Arc::new(
                    RedisQueue::connect_with(redis_url.expose(), prefix, config.queues.clone())
                        .await
                        .context("connecting to Redis")?,
                ),
                limiter: limiter.clone(),
                workers: store.clone(),
                board: Arc::new(RedisBoard::new(redis.clone(), prefix)),
                ai: runner::AiBackends {
                    usage: store,
                    breakers: Arc::new(RedisBreakers::new(
                        redis.clone(),
                        prefix,
                        config.ai.breaker,
                    )),
                    limiter,
                    cache: Arc::new(RedisCache::new(redis, prefix)),
                },
            }
        }
    })
}

/// The configured JWT secret; in embedded mode without one, a secret generated once and kept
/// in `DATA_DIR/jwt_secret`, so tokens survive restarts and `token` can mint them.
pub fn jwt_secret(config: &Config) -> anyhow::Result<Secret> {
    if let Some(s) = &config.jwt_secret {
        return Ok(s.clone());
    }
    let Backend::Embedded { data_dir } = &config.backend else {
        anyhow::bail!("JWT_SECRET must be set in clustered mode");
    };
    load_or_create_secret(&data_dir.join("jwt_secret"))
}

/// The token keys: the secret, the configured checks, and `jwks` when an identity provider's
/// keys are configured.
pub fn jwt_keys(config: &Config, jwks: Option<Arc<JwksCache>>) -> anyhow::Result<JwtKeys> {
    let settings = JwtSettings {
        issuer: config.jwt.issuer.clone(),
        audience: config.jwt.audience.clone(),
        leeway: config.jwt.leeway,
    };
    Ok(JwtKeys::with(&jwt_secret(config)?, settings, jwks))
}

/// The identity provider's keys, read once now (a failure is logged: tokens it signed are
/// refused until a refresh succeeds) and refreshed in the background until `shutdown`.
async fn jwks(
    config: &Config,
    background: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<Arc<JwksCache>> {
    let source = match (&config.jwt.jwks_url, &config.jwt.jwks_file) {
        (Some(url), _) => JwksSource::Url(url.clone()),
        (None, Some(file)) => JwksSource::File(file.clone()),
        (None, None) => return None,
    };
    let cache = Arc::new(JwksCache::new(source));
    match cache.refresh().await {
        Ok(n) => tracing::info!(keys = n, "identity provider keys loaded"),
        Err(e) => tracing::warn!(error = %e, "identity provider keys not loaded yet; retrying"),
    }
    background.spawn(cache.clone().run(shutdown.child_token()));
    Some(cache)
}

fn load_or_create_secret(path: &Path) -> anyhow::Result<Secret> {
    if let Ok(s) = std::fs::read_to_string(path) {
        return Ok(Secret::new(s.trim()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes: [u8; 32] = rand::rng().random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(Secret::new(secret))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

impl Application {
    /// Connects the backends, starts the background loops and binds the port (0 = any free
    /// port, for tests).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Before anything records: metrics recorded earlier would go nowhere.
        let recorder = config
            .metrics_enabled
            .then(crate::telemetry::metrics::recorder);
        let shutdown = CancellationToken::new();
        let background = TaskTracker::new();
        // Before connecting: a bad definition stops the start with its message.
        let catalog = Catalog::load(config.pipelines.file.as_deref())?;
        let backends = connect(&config, &background, &shutdown).await?;
        let idp = jwks(&config, &background, &shutdown).await;
        let keys = jwt_keys(&config, idp)?;
        if config.jwt_secret.is_none() {
            announce_dev_tokens(&keys);
        }
        let limits = SubmitLimits {
            max_queue_size: config.max_queue_size,
            max_retries: config.max_retries,
            task_timeout: config.task_timeout,
            type_timeouts: config.task_timeouts.clone(),
            policy: SubmitPolicy {
                max_timeout: config.max_task_timeout,
                echo_enabled: config.enable_echo,
                echo_max_delay: config
                    .task_timeout
                    .min(Duration::from_millis(MAX_ECHO_DELAY_MS as u64)),
                priority_ceiling: config.max_user_priority,
            },
            user_submit_rate: config.user_submit_rate,
            max_active_per_user: config.max_active_tasks_per_user,
        };
        let states = Arc::new(QueueStates::new(config.queues.clone()));
        let queue_sync =
            QueueSync::new(backends.queues.clone(), states.clone(), QUEUE_SYNC_INTERVAL);
        queue_sync
            .register()
            .await
            .context("registering the queues")?;
        background.spawn(queue_sync.run(shutdown.child_token()));
        let slots = Slots::new(
            &states,
            config.worker_pool_min,
            config.worker_pool_size,
            config.adaptive_pool,
        );
        let host = hostname();
        let worker_id = WorkerId::generate(&host);
        let live = Arc::new(LiveCounters::new());

        let head = StoreHead::new();
        background.spawn(head.clone().run(
            backends.events.clone(),
            EVENT_HEAD_POLL,
            shutdown.child_token(),
        ));
        background.spawn(
            TaskFeed {
                finishes: backends.finishes,
                events: backends.events.clone(),
                store: backends.projections.clone(),
                head: head.clone(),
                settle: task_feed::SETTLE,
            }
            .run(shutdown.child_token()),
        );
        if config.projections.enabled {
            ProjectionManager {
                events: backends.events.clone(),
                store: backends.projections.clone(),
                head: head.clone(),
                owner: worker_id.as_str().to_owned(),
                settings: RunnerSettings {
                    batch: config.projections.batch_size,
                    lease: config.projections.lease,
                    renew_every: (config.projections.lease / 5).max(Duration::from_millis(100)),
                    ..RunnerSettings::default()
                },
            }
            .spawn(&background, &shutdown);
        }
        let audit = AuditLog::new(backends.audit.clone());
        let projections = ProjectionsService::new(
            backends.events.clone(),
            backends.projections.clone(),
            config.projections.lag_threshold,
            audit.clone(),
        );
        let eventstore =
            EventStoreService::new(backends.events.clone(), head.clone(), shutdown.clone());
        let progress = ProgressService::new(backends.progress.clone());
        let (dispatch, dispatched) = Dispatch::new(
            worker_id.clone(),
            config.lease_duration,
            slots.clone(),
            states.clone(),
        );
        let commits = Gather {
            loops: WRITE_LOOPS,
            linger: match config.backend {
                Backend::Embedded { .. } => Duration::ZERO,
                Backend::Clustered { .. } => POSTGRES_GATHER,
            },
        };
        let tasks = TaskService::new(
            backends.store.clone(),
            backends.queue.clone(),
            backends.limiter.clone(),
            limits,
            &background,
            commits,
            config.direct_dispatch.then(|| dispatch.clone()),
        )
        .with_live_counters(live.clone());
        if config.adaptive_pool {
            let adaptive = AdaptiveLimit::new(
                slots.clone(),
                backends.queue.clone(),
                ProcLoad::default(),
                ADAPTIVE_INTERVAL,
            );
            background.spawn(adaptive.run(shutdown.child_token()));
        }

        let reconciler = Reconciler::new(
            backends.store.clone(),
            backends.queue.clone(),
            config.reconcile_interval,
        );
        let pushed = reconciler
            .reconcile(Duration::ZERO)
            .await
            .context("rebuilding the queue at start")?;
        tracing::info!(pushed, "queue rebuilt from the database");
        background.spawn(reconciler.run(shutdown.child_token()));
        let scheduler = DelayScheduler::new(backends.queue.clone());
        let retry_wake = scheduler.waker();
        background.spawn(scheduler.run(shutdown.child_token()));
        let reaper = Reaper::new(
            backends.store.clone(),
            backends.queue.clone(),
            config.lease_duration,
        );
        background.spawn(reaper.run(shutdown.child_token()));

        let usage = backends.ai.usage.clone();
        let runner = runner::task_runner(&config.ai, backends.ai, live.clone(), &background)
            .context("building the AI providers")?;
        let chat = chat::chat_service(
            &config,
            chat::ChatBackends {
                store: backends.chat.clone(),
                limiter: backends.limiter.clone(),
                live: backends.bus.clone(),
            },
            &runner,
            worker_id.as_str().to_owned(),
            &background,
            &shutdown,
        );
        let mut pool = WorkerPool::new(
            worker_id.clone(),
            backends.store.clone(),
            backends.queue.clone(),
            runner.clone(),
            PoolConfig {
                size: config.worker_pool_size,
                lease: config.lease_duration,
                retry_base_delay: config.retry_base_delay,
                grace_period: config.shutdown_grace_period,
                finishes: commits,
                instance: host.clone(),
                claim_batch: config.claim_batch_size,
            },
        )
        .with_retry_waker(retry_wake)
        .with_queues(states.clone(), slots.clone())
        .with_live_counters(live.clone());
        if config.direct_dispatch {
            pool = pool.with_dispatch(dispatch, dispatched);
        }
        background.spawn(pool.run(shutdown.child_token()));

        let hub = Hub::new(
            backends.notifications.clone(),
            HubConfig {
                buffer: config.notification_buffer,
                sweep_interval: HUB_SWEEP_INTERVAL,
            },
        );
        background.spawn(
            hub.clone()
                .run(backends.bus.clone(), shutdown.child_token()),
        );
        let retention = Retention::new(
            backends.notifications.clone(),
            config.notification_retention,
        );
        background.spawn(retention.run(shutdown.child_token()));
        let sessions = Arc::new(SessionBook::new(
            backends.notifications.clone(),
            crate::service::notifications::SESSION_TOUCH,
        ));
        background.spawn(sessions.clone().run(shutdown.child_token()));
        let notifications = NotificationService::new(
            backends.notifications.clone(),
            backends.store.clone(),
            hub,
            StreamLimits {
                max_connections: config.max_connections,
                keepalive: config.notification_keepalive,
                pong_timeout: config.limits.ws_pong_timeout,
            },
            host.clone(),
            sessions,
            shutdown.clone(),
        )
        .with_stream_quota(StreamQuota::new(config.limits.max_streams_per_user));

        let scheduler = Scheduler::new(
            backends.pipelines.clone(),
            tasks.clone(),
            config.pipelines.clone(),
        );
        background.spawn(
            SchedulerLoop {
                scheduler: scheduler.clone(),
                ends: backends.stage_ends,
                interval: crate::service::pipeline::SWEEP_INTERVAL,
            }
            .run(shutdown.child_token()),
        );
        let pipelines = PipelineService::new(
            backends.pipelines.clone(),
            catalog,
            scheduler,
            notifications.clone(),
        );

        let metrics = MetricsService::new(
            recorder,
            MetricsSources {
                queue: backends.queue.clone(),
                store: backends.store.clone(),
                usage: usage.clone(),
                runner: runner.clone(),
                slots: slots.clone(),
                monthly_budget: config.ai.monthly_budget,
                projections: projections.clone(),
            },
        );
        let dashboard = dashboard::start(
            &worker_id,
            live,
            backends.board.clone(),
            slots.clone(),
            StateSources {
                queue: backends.queue.clone(),
                states: states.clone(),
                runner: runner.clone(),
                store: backends.store.clone(),
                usage: usage.clone(),
                workers: backends.workers.clone(),
            },
            &background,
            &shutdown,
        );
        let queues = QueueService::new(
            backends.store.clone(),
            backends.queues.clone(),
            backends.queue.clone(),
            states,
            slots,
        );
        let admin = AdminService::new(
            backends.store.clone(),
            backends.queue.clone(),
            queues,
            audit.clone(),
        );
        let providers = ProvidersService::new(
            runner.clone(),
            usage,
            tasks.clone(),
            config.ai.user_monthly_budget,
            audit.clone(),
        );
        let tickets = StreamTickets::new(backends.notifications.clone(), config.stream_ticket_ttl);
        // Unready from the first instant of the drain: the child is cancelled within the
        // shutdown token's own `cancel()`.
        let readiness = Readiness::new(
            backends.store.clone(),
            backends.queue.clone(),
            shutdown.child_token(),
        )
        .with_projections(projections.clone());
        let (health_watch, health) =
            api::grpc::health::health_service(readiness.clone(), api::grpc::health::PROBE_INTERVAL)
                .await;
        background.spawn(health_watch.run(shutdown.child_token()));
        let metrics_only = api::http::metrics_only(metrics.clone());
        let edge = api::limits::Edge {
            limits: config.limits.clone(),
            keys: keys.clone(),
            limiter: backends.limiter.clone(),
        };
        let router = api::router(
            AppState {
                tasks,
                admin,
                keys,
                notifications,
                tickets,
                providers,
                readiness,
                metrics,
                eventstore,
                progress,
                projections,
                audit,
                chat,
                dashboard,
                pipelines,
            },
            health,
            edge,
        );
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let metrics = match config.metrics_port {
            None => None,
            Some(port) => {
                let addr = SocketAddr::new(config.host, port);
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding METRICS_PORT {addr}"))?;
                Some((listener, metrics_only))
            }
        };
        Ok(Self {
            listener,
            router,
            metrics,
            shutdown,
            background,
            grace_period: config.shutdown_grace_period,
            limits: config.limits.clone(),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The bound `METRICS_PORT`, if one is configured.
    pub fn metrics_port(&self) -> Option<u16> {
        let (listener, _) = self.metrics.as_ref()?;
        listener.local_addr().ok().map(|a| a.port())
    }

    /// Cancel this token to shut down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains: stop accepting, let running
    /// requests and tasks finish within the grace period, flush pending writes.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            metrics,
            shutdown,
            background,
            grace_period,
            limits,
        } = self;
        tracing::info!(addr = %listener.local_addr()?, "serving HTTP and gRPC");
        let server = tokio::spawn(serve::serve(listener, router, limits, shutdown.clone()));
        if let Some((listener, router)) = metrics {
            tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
            let scrapes = axum::serve(listener, router.into_make_service())
                .with_graceful_shutdown(shutdown.clone().cancelled_owned());
            background.spawn(async move {
                if let Err(e) = scrapes.await {
                    tracing::warn!(error = %e, "metrics listener failed");
                }
            });
        }
        shutdown.cancelled().await;
        // Open connections get the grace period to finish their requests.
        match tokio::time::timeout(grace_period + Duration::from_secs(1), server).await {
            Ok(joined) => joined.context("server task")?,
            Err(_) => tracing::warn!("connections still open after the grace period; closing"),
        }
        background.close();
        if tokio::time::timeout(grace_period + Duration::from_secs(2), background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background work did not stop in time");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

/// Embedded mode without `JWT_SECRET`: print ready-made tokens so a newcomer can try the API.
fn announce_dev_tokens(keys: &JwtKeys) {
    let ttl = Duration::from_secs(24 * 3600);
    let (Ok(user), Ok(admin)) = (UserId::parse("dev-user"), UserId::parse("dev-admin")) else {
        return;
    };
    if let (Ok(u), Ok(a)) = (
        keys.issue(&user, Role::User, ttl),
        keys.issue(&admin, Role::Admin, ttl),
    ) {
        tracing::info!(
            "no JWT_SECRET set: using a generated one (DATA_DIR/jwt_secret). Tokens valid 24h:\n  \
             user  (dev-user):  {u}\n  admin (dev-admin): {a}"
        );
    }
}
