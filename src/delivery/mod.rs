//! The worker: jobs from RabbitMQ become template messages.
//!
//! - [`pipeline`]: decode, claim, resolve, expire, rate-limit, token, send, classify: a typed
//!   decision.
//! - [`settle`]: the one place a decision becomes ledger writes (one transaction per outcome).
//! - [`acks`]: coalesced `basic.ack`s.
//! - [`consumer`]: the broker side: consume, then pipeline → settle → ack or retry tier,
//!   reconnect, shut down.
//! - [`death`]: why RabbitMQ dead-lettered a message (its last death).
//! - [`ledger`]: the `deliveries` ledger (claims with a lease) and dead letters in Postgres.
//! - [`pause`]: this process's own record of 45009 pauses.
//! - [`resolve`]: Mini Program openid -> unionid -> subscribed OA openid.
//! - [`outcome`]: the outcome enum and dead reasons.
//! - [`retry`]: the retry policy (backoff with jitter, attempts, quota pause).
//! - [`rate_limit`]: per-app rates, exact across worker processes (permits leased from Postgres,
//!   [`rate_lease`]).
//! - [`stats`]: counters for summaries.

pub mod acks;
pub mod batch;
pub mod consumer;
pub mod death;
pub mod ledger;
pub mod outcome;
pub mod pause;
pub mod pipeline;
pub mod rate_lease;
pub mod rate_limit;
pub mod resolve;
pub mod retry;
pub mod settle;
pub mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use consumer::{Consumer, ConsumerOptions};
pub use outcome::{DeadReason, Outcome};
pub use pipeline::Pipeline;
pub use retry::RetryPolicy;
pub use stats::{StatsSnapshot, WorkerStats};

use crate::config::Settings;
use crate::queue::{Lane, Topology};
use crate::wechat::client::ClientOptions;
use crate::wechat::{TokenStore, WechatClient};

/// Arguments of `wxnotify worker`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify worker\n  wxnotify worker --lane jobs --prefetch 64\n  wxnotify worker --retry-first-delay-ms 500 --retry-factor 2 --retry-max-delay-secs 600 --max-attempts 8\n  WXNOTIFY_LOG_FORMAT=json RUST_LOG=wxnotify=debug wxnotify worker\n\nStops on SIGTERM or Ctrl-C after in-flight jobs are recorded."
)]
pub struct WorkerArgs {
    /// Unacked jobs per lane, i.e. sends in flight per lane.
    #[arg(long, default_value_t = 512, env = "WXNOTIFY_PREFETCH")]
    pub prefetch: u16,
    /// Consume only this lane (repeatable); default both.
    #[arg(long = "lane", value_enum)]
    pub lanes: Vec<Lane>,
    /// Attempts per job before it dies with `retries_exhausted` (per life: `dlq replay` starts
    /// a new one).
    #[arg(long, default_value_t = 8, env = "WXNOTIFY_MAX_ATTEMPTS",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: u32,
    /// The retry schedule's first delay, in milliseconds (then × factor, up to the cap; each
    /// delay is served by the smallest retry tier at least that long: 500ms, 1s, 2s, 4s, 8s,
    /// 16s, 32s, 1m, 2m, 5m, 10m, 1h).
    #[arg(long, default_value_t = 500, env = "WXNOTIFY_RETRY_FIRST_DELAY_MS")]
    pub retry_first_delay_ms: u64,
    /// The retry schedule's factor (at least 1).
    #[arg(long, default_value_t = 2.0, env = "WXNOTIFY_RETRY_FACTOR", value_parser = parse_factor)]
    pub retry_factor: f64,
    /// The retry schedule's longest delay, in seconds.
    #[arg(long, default_value_t = 600, env = "WXNOTIFY_RETRY_MAX_DELAY_SECS")]
    pub retry_max_delay_secs: u64,
    /// How long after a send whose answer never came the job may still be sent again, in
    /// seconds (WeChat drops a resend with the same client_msg_id for about 10 minutes; keep a
    /// margin). Past it the job dies `outcome_unknown`.
    #[arg(long, default_value_t = 480, env = "WXNOTIFY_RESEND_WINDOW_SECS")]
    pub resend_window_secs: u64,
    /// Threads of this process's async runtime. One (the default) runs every send, statement
    /// and ack on one thread, which spends the least CPU per job (no wake-ups across threads;
    /// see README "Figures"); for more throughput run more worker processes, which share each
    /// app's rate limit, or raise this.
    #[arg(long, default_value = "1", env = "WXNOTIFY_WORKER_THREADS")]
    pub threads: std::num::NonZeroUsize,
    /// Postgres connections of this process.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_connections: u32,
    /// The lanes' delivery limit used when this worker declares the queues; it must match the
    /// queues' existing setting (change a running system with a RabbitMQ policy instead).
    #[arg(long, default_value_t = 10, env = "WXNOTIFY_DELIVERY_LIMIT")]
    pub delivery_limit: u32,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` on this address, e.g.
    /// 127.0.0.1:9101. Off when not given.
    #[arg(long, env = "WXNOTIFY_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Do not run the campaign dispatcher in this process (run `wxnotify campaign dispatch`
    /// elsewhere, or let other workers drive campaigns).
    #[arg(long)]
    pub no_campaign_dispatcher: bool,
}

/// A worker assembled from settings, ready to run.
pub struct Worker {
    pipeline: Arc<Pipeline>,
    consumer: Consumer,
    pool: PgPool,
}

/// How a worker is built.
#[derive(Debug, Clone, Default)]
pub struct WorkerConfig {
    /// Broker side.
    pub consumer: ConsumerOptions,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// WeChat client options.
    pub client: ClientOptions,
}

impl Worker {
    /// Builds a worker on `pool` for the apps, broker and WeChat of `settings`.
    pub fn new(settings: &Settings, pool: PgPool, config: WorkerConfig) -> anyhow::Result<Self> {
        // Every unacked delivery may be a send in flight: keep as many idle connections, or
        // each burst above the pool closes connections that the next burst opens again.
        let mut client_options = config.client.clone();
        let in_flight = usize::from(config.consumer.prefetch) * config.consumer.lanes.len().max(1);
        client_options.pool_max_idle_per_host =
            client_options.pool_max_idle_per_host.max(in_flight);
        let client = WechatClient::new(settings.wechat_api_base.clone(), &client_options)?;
        let tokens = TokenStore::new(pool.clone(), client.clone(), &settings.apps);
        let limits = Arc::new(rate_limit::Limits::new(
            &settings.apps,
            rate_limit::dedicated_pool(&pool),
        ));
        let apps = settings.apps.iter().map(|a| a.name.clone()).collect();
        let pipeline = Arc::new(Pipeline::new(
            ledger::Ledger::for_worker(pool.clone(), limits.worker_id()),
            tokens,
            client,
            limits,
            apps,
            config.retry,
            Arc::new(WorkerStats::default()),
        ));
        let topology = Topology::new(settings.queue_prefix.clone());
        let consumer = Consumer::new(
            pipeline.clone(),
            settings.amqp_url.clone(),
            topology,
            config.consumer,
        );
        Ok(Worker {
            pipeline,
            consumer,
            pool,
        })
    }

    /// The worker's counters.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.pipeline.stats().clone()
    }

    /// Consumes until `shutdown`, then lets in-flight jobs reach a recorded outcome.
    pub async fn run(&self, shutdown: CancellationToken) {
        // The heartbeat outlives the drain: a claim of a send still in flight must not look like
        // a dead worker's (another worker would take it over and send a twin). It stops, and the
        // worker leaves the `workers` table, only once the consumer has recorded every outcome.
        let drained = CancellationToken::new();
        let heartbeat = tokio::spawn(
            self.pipeline
                .limits()
                .clone()
                .run_heartbeat(self.pool.clone(), drained.clone()),
        );
        // Issue 14: today's template catalog before the first check; then its upkeep task.
        self.pipeline
            .rules()
            .prepare(std::time::Duration::from_secs(10))
            .await;
        let upkeep = tokio::spawn(self.pipeline.rules().clone().run(shutdown.clone()));
        // Appear in the ops view of workers and read the apps' pauses before the first send.
        if let Err(e) = self.pipeline.limits().heartbeat(&self.pool).await {
            tracing::warn!(error = %e, "first heartbeat failed");
        }
        self.consumer.run(shutdown).await;
        drained.cancel();
        let _ = heartbeat.await;
        let _ = upkeep.await;
    }
}

/// Runs `wxnotify worker`.
pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let pool = crate::db::connect(&settings.database_url, args.db_connections).await?;
    crate::db::migrate(&pool).await?;
    crate::db::register_apps(&pool, &settings.apps).await?;
    let mut config = WorkerConfig::default();
    config.consumer.prefetch = args.prefetch;
    if !args.lanes.is_empty() {
        config.consumer.lanes = args.lanes;
    }
    config.retry.max_attempts = args.max_attempts.max(1);
    config.retry.min_delay = Duration::from_millis(args.retry_first_delay_ms);
    config.retry.factor = args.retry_factor;
    config.retry.max_delay = Duration::from_secs(args.retry_max_delay_secs);
    config.retry.resend_window = Duration::from_secs(args.resend_window_secs);
    config.consumer.topology.delivery_limit = args.delivery_limit;
    // A refused login, a missing vhost or queues declared with other arguments never pass:
    // exit 2 naming the setting instead of reconnecting forever.
    crate::queue::diagnose::check_broker(
        &settings.amqp_url,
        &Topology::new(settings.queue_prefix.clone()),
        &config.consumer.topology,
    )
    .await?;
    let config_retry = config.retry.describe();
    let worker = Worker::new(&settings, pool, config).context("building the worker")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, shutdown.clone()).await?;
    }
    tracing::info!(apps = settings.apps.len(), prefix = %settings.queue_prefix, retries = %config_retry, "worker starting");
    let dispatcher = (!args.no_campaign_dispatcher).then(|| {
        tokio::spawn(crate::campaigns::dispatcher::run_until(
            settings.clone(),
            worker.pool.clone(),
            Default::default(),
            shutdown.clone(),
        ))
    });
    worker.run(shutdown).await;
    if let Some(dispatcher) = dispatcher {
        let _ = dispatcher.await;
    }
    tracing::info!(stats = ?worker.stats().snapshot(), "worker stopped");
    Ok(ExitCode::SUCCESS)
}

/// A retry factor: a number, at least 1.
fn parse_factor(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a factor of at least 1 (e.g. 2)")),
    }
}

/// Serves `/metrics` (the process's Prometheus recorder) and `/healthz` on `addr` until
/// `shutdown`.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let handle = crate::http::health::metrics_handle();
    let router = axum::Router::new()
        .route("/healthz", get(crate::http::health::healthz))
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    handle.run_upkeep();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        handle.render(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics (--metrics-listen)"))?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok(())
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot listen for SIGTERM");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    token.cancel();
}
