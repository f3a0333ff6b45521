//! The worker: jobs from RabbitMQ become template messages.
//!
//! - [`pipeline`]: decode, claim, resolve, expire, rate-limit, token, send, classify, record.
//! - [`acks`]: coalesced `basic.ack`s.
//! - [`consumer`]: the broker side: consume, settle (ack / retry / dead), reconnect, shut down.
//! - [`ledger`]: the `deliveries` ledger and dead letters in Postgres.
//! - [`resolve`]: Mini Program openid -> unionid -> subscribed OA openid.
//! - [`outcome`]: the outcome enum and dead reasons.
//! - [`retry`]: the retry policy (backoff with jitter, attempts, quota pause).
//! - [`rate_limit`]: per-app rates shared across worker processes.
//! - [`stats`]: counters for summaries.

pub mod acks;
pub mod batch;
pub mod consumer;
pub mod ledger;
pub mod outcome;
pub mod pipeline;
pub mod rate_limit;
pub mod resolve;
pub mod retry;
pub mod stats;

use std::process::ExitCode;
use std::sync::Arc;

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
    after_help = "Examples:\n  wxnotify worker\n  wxnotify worker --lane jobs --prefetch 64\n  WXNOTIFY_LOG_FORMAT=json RUST_LOG=wxnotify=debug wxnotify worker\n\nStops on SIGTERM or Ctrl-C after in-flight jobs are recorded."
)]
pub struct WorkerArgs {
    /// Unacked jobs per lane, i.e. sends in flight per lane.
    #[arg(long, default_value_t = 512, env = "WXNOTIFY_PREFETCH")]
    pub prefetch: u16,
    /// Consume only this lane (repeatable); default both.
    #[arg(long = "lane", value_enum)]
    pub lanes: Vec<Lane>,
    /// Attempts per job before it dies with `retries_exhausted`.
    #[arg(long, default_value_t = 8, env = "WXNOTIFY_MAX_ATTEMPTS")]
    pub max_attempts: u32,
    /// Threads of this process's async runtime. One (the default) runs every send, statement
    /// and ack on one thread, which spends the least CPU per job (no wake-ups across threads;
    /// see README "Figures"); for more throughput run more worker processes, which share each
    /// app's rate limit, or raise this.
    #[arg(long, default_value = "1", env = "WXNOTIFY_WORKER_THREADS")]
    pub threads: std::num::NonZeroUsize,
    /// Postgres connections of this process.
    #[arg(long, default_value_t = 16)]
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
        let limits = Arc::new(rate_limit::Limits::new(&settings.apps));
        let apps = settings.apps.iter().map(|a| a.name.clone()).collect();
        let pipeline = Arc::new(Pipeline::new(
            ledger::Ledger::new(pool.clone()),
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
        let heartbeat = tokio::spawn(
            self.pipeline
                .limits()
                .clone()
                .run_heartbeat(self.pool.clone(), shutdown.clone()),
        );
        // Take this process's share of the rate before the first send.
        if let Err(e) = self.pipeline.limits().heartbeat(&self.pool).await {
            tracing::warn!(error = %e, "first heartbeat failed");
        }
        self.consumer.run(shutdown).await;
        let _ = heartbeat.await;
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
    config.consumer.topology.delivery_limit = args.delivery_limit;
    let worker = Worker::new(&settings, pool, config).context("building the worker")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, shutdown.clone()).await?;
    }
    tracing::info!(apps = settings.apps.len(), prefix = %settings.queue_prefix, "worker starting");
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
