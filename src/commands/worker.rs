//! `wxnotify worker`: consume jobs and send them until SIGTERM / Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use wxnotify_app::Application;
use wxnotify_core::config::Settings;
use wxnotify_core::domain::Lane;
use wxnotify_core::queue::Topology;
use wxnotify_worker::WorkerConfig;

/// Arguments of `wxnotify worker`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify worker\n  wxnotify worker --lane jobs --prefetch 64\n  wxnotify worker --metrics-listen 0.0.0.0:9101   # /metrics, /livez, /readyz\n  wxnotify worker --retry-first-delay-ms 500 --retry-factor 2 --retry-max-delay-secs 600 --max-attempts 8\n  WXNOTIFY_LOG_FORMAT=json RUST_LOG=wxnotify=debug wxnotify worker\n\nStops on SIGTERM or Ctrl-C after in-flight jobs are recorded."
)]
pub struct WorkerArgs {
    /// Unacked jobs per lane, i.e. sends in flight per lane.
    #[arg(long, default_value_t = 512, env = "WXNOTIFY_PREFETCH")]
    pub prefetch: u16,
    /// Consume only this lane (repeatable); default both.
    #[arg(long = "lane", value_parser = super::lane_parser())]
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
    /// How long to wait for WeChat's content review of a message it held (answered 40252), in
    /// seconds. A held message the review blocks is dead `content_blocked` as soon as WeChat
    /// lists it; one not blocked after this long is recorded sent (WeChat delivered it).
    #[arg(long, default_value_t = 1800, env = "WXNOTIFY_REVIEW_HOLD_SECS",
          value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub review_hold_secs: u64,
    /// Threads of this process's async runtime. One (the default) runs every send, statement
    /// and ack on one thread, which spends the least CPU per job (no wake-ups across threads;
    /// see docs/benchmarks.md); for more throughput run more worker processes, which share each
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
    /// Serve Prometheus metrics (`/metrics`), `/livez` (liveness), `/readyz` (readiness) and
    /// `/healthz` on this address, e.g. 127.0.0.1:9101. Off when not given.
    #[arg(long, env = "WXNOTIFY_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Do not run the campaign dispatcher in this process (run `wxnotify campaign dispatch`
    /// elsewhere, or let other workers drive campaigns).
    #[arg(long)]
    pub no_campaign_dispatcher: bool,
}

/// Runs `wxnotify worker`.
pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
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
    config.upkeep.review.hold = Duration::from_secs(args.review_hold_secs);
    config.consumer.topology.delivery_limit = args.delivery_limit;
    // A refused login, a missing vhost or queues declared with other arguments never pass:
    // exit 2 naming the setting instead of reconnecting forever.
    wxnotify_core::queue::diagnose::check_broker(
        &settings.amqp_url,
        &Topology::new(settings.queue_prefix.clone()),
        &config.consumer.topology,
    )
    .await?;
    let config_retry = config.retry.describe();
    let app = Application::connect_worker(settings.clone(), args.db_connections).await?;
    let worker = app.worker(config).context("building the worker")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(super::cancel_on_signal(shutdown.clone()));
    if let Some(addr) = args.metrics_listen {
        let router =
            wxnotify_worker::health::worker_router(worker.broker_link(), worker.pool().clone());
        wxnotify_worker::health::spawn(addr, router, shutdown.clone().cancelled_owned()).await?;
    }
    tracing::info!(apps = settings.apps.len(), prefix = %settings.queue_prefix, retries = %config_retry, "worker starting");
    let dispatcher = (!args.no_campaign_dispatcher).then(|| {
        tokio::spawn(wxnotify_services::campaigns::dispatcher::run_until(
            settings.clone(),
            worker.pool().clone(),
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
