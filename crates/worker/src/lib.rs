//! The worker: jobs from RabbitMQ become template messages.
//!
//! - [`pipeline`]: decode, claim, resolve, expire, rate-limit, token, send, classify: a typed
//!   decision.
//! - [`settle`]: the one place a decision becomes ledger writes (one transaction per outcome).
//! - [`acks`]: coalesced `basic.ack`s.
//! - [`consumer`]: the broker side: consume, then pipeline → settle → ack or retry tier,
//!   reconnect, shut down.
//! - [`death`]: why RabbitMQ dead-lettered a message (its last death).
//! - [`pause`]: this process's own record of 45009 pauses.
//! - [`retry`]: the retry policy (backoff with jitter, attempts, quota pause).
//! - [`rate_limit`]: per-app rates, exact across worker processes (permits leased from Postgres,
//!   [`rate_lease`]).
//! - [`stats`]: counters for summaries; [`link`]: whether the consumer is connected.
//! - [`upkeep`]: WeChat's rules of the day (template catalog, quota, review verdicts), kept
//!   up to date in the background and checked before every send.
//! - [`gate`]: a campaign's job waits while its campaign is paused and ends `cancelled` once
//!   it is cancelled.
//! - [`gauges`]: the gauges of shared state (quota today, queue depths, live workers).
//! - [`health`]: the worker's `/metrics`, `/livez`, `/readyz` and `/healthz` on
//!   `--metrics-listen`.
//!
//! The ledger the pipeline writes through is `wxnotify_services::ledger`.
//!
//! The command is `wxnotify worker`; [`Worker`] is built by the composition root
//! (`wxnotify-app`).

pub mod acks;
pub mod consumer;
pub mod death;
pub mod gate;
pub mod gauges;
pub mod health;
pub mod link;
pub mod pause;
pub mod pipeline;
pub mod rate_lease;
pub mod rate_limit;
pub mod retry;
pub mod settle;
pub mod stats;
pub mod upkeep;

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use consumer::{Consumer, ConsumerOptions};
pub use link::BrokerLink;
pub use pipeline::Pipeline;
pub use retry::RetryPolicy;
pub use stats::{StatsSnapshot, WorkerStats};
pub use wxnotify_services::ledger::outcome::{DeadReason, Outcome};

use wxnotify_core::config::Settings;
use wxnotify_core::queue::Topology;
use wxnotify_core::wechat::Wechat;
use wxnotify_core::wechat::client::ClientOptions;

/// A worker assembled from settings, ready to run.
pub struct Worker {
    pipeline: Arc<Pipeline>,
    consumer: Consumer,
    pool: PgPool,
    gauges: Arc<gauges::Gauges>,
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
    /// The background upkeep: template catalog, quota, review verdicts of held messages.
    pub upkeep: crate::upkeep::UpkeepOptions,
}

impl WorkerConfig {
    /// The WeChat client options for this worker: every unacked delivery may be a send in
    /// flight, so keep as many idle connections, or each burst above the pool closes
    /// connections that the next burst opens again.
    pub fn client_options(&self) -> ClientOptions {
        let mut options = self.client.clone();
        let in_flight = usize::from(self.consumer.prefetch) * self.consumer.lanes.len().max(1);
        options.pool_max_idle_per_host = options.pool_max_idle_per_host.max(in_flight);
        options
    }
}

impl Worker {
    /// Builds a worker on `pool` for the apps and broker of `settings`, sending through
    /// `wechat` (built with [`WorkerConfig::client_options`]).
    pub fn new(
        settings: &Settings,
        pool: PgPool,
        wechat: Wechat,
        config: WorkerConfig,
    ) -> anyhow::Result<Self> {
        let Wechat { client, tokens } = wechat;
        let limits = Arc::new(
            rate_limit::Limits::new(&settings.apps, rate_limit::dedicated_pool(&pool))
                .consuming(&config.consumer.lanes),
        );
        let apps = settings.apps.iter().map(|a| a.name.clone()).collect();
        let pipeline = Arc::new(Pipeline::new(
            wxnotify_services::ledger::Ledger::for_worker(pool.clone(), limits.worker_id()),
            tokens,
            client,
            limits,
            apps,
            config.retry,
            config.upkeep,
        ));
        let topology = Topology::new(settings.queue_prefix.clone());
        let gauges = Arc::new(gauges::Gauges::new(
            settings,
            pool.clone(),
            topology.clone(),
        ));
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
            gauges,
        })
    }

    /// Whether the worker is consuming from RabbitMQ now (its `/healthz`).
    pub fn broker_link(&self) -> BrokerLink {
        self.consumer.link()
    }

    /// The worker's Postgres pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
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
        // Today's template catalog before the first check; then its upkeep task.
        self.pipeline
            .rules()
            .prepare(std::time::Duration::from_secs(10))
            .await;
        let upkeep = tokio::spawn(self.pipeline.rules().clone().run(shutdown.clone()));
        let gauges = tokio::spawn(self.gauges.clone().run(shutdown.clone()));
        // Appear in the ops view of workers and read the apps' pauses before the first send.
        if let Err(e) = self.pipeline.limits().heartbeat(&self.pool).await {
            tracing::warn!(error = %e, "first heartbeat failed");
        }
        self.consumer.run(shutdown).await;
        drained.cancel();
        let _ = heartbeat.await;
        let _ = upkeep.await;
        let _ = gauges.await;
    }
}
