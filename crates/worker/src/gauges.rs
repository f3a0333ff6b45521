//! The worker's gauges of shared state, read every [`EVERY`]: each app's quota today
//! (`wxnotify_quota_*`, the numbers `wxnotify status` shows: WeChat's count at the last read
//! plus the sends recorded on the ledger since), the depth of every queue
//! (`wxnotify_queue_messages`, `wxnotify_queue_consumers`) and the live workers
//! (`wxnotify_workers_live`).
//!
//! The quota is re-counted here rather than only when WeChat is asked (every few minutes): a
//! gauge set at the read would stay at the morning's number while the day's sends go out.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_core::queue::Topology;
use wxnotify_services::quota;

/// Between two readings.
pub const EVERY: Duration = Duration::from_secs(10);

/// What the gauges are read from.
pub struct Gauges {
    pool: PgPool,
    apps: Vec<AppName>,
    settings: Settings,
    topology: Topology,
}

impl Gauges {
    /// Gauges of the apps and queues of `settings`, read from `pool` and RabbitMQ.
    pub fn new(settings: &Settings, pool: PgPool, topology: Topology) -> Self {
        Gauges {
            pool,
            apps: settings.apps.iter().map(|a| a.name.clone()).collect(),
            settings: settings.clone(),
            topology,
        }
    }

    /// Reads everything once now; what cannot be read keeps its last value (and is logged).
    pub async fn refresh(&self) {
        let now = Utc::now();
        for app in &self.apps {
            match quota::today(&self.pool, app, now).await {
                Ok(Some(q)) => quota::export_metrics(app, &q),
                Ok(None) => {}
                Err(e) => tracing::warn!(app = %app, error = %e, "counting today's quota failed"),
            }
        }
        match quota::status::live_workers(&self.pool).await {
            Ok(live) => metrics::gauge!("wxnotify_workers_live").set(live.len() as f64),
            Err(e) => tracing::warn!(error = %e, "counting the live workers failed"),
        }
        match quota::status::queue_depths(&self.settings, &self.topology).await {
            Ok(depths) => {
                for q in depths {
                    metrics::gauge!("wxnotify_queue_messages", "queue" => q.queue.clone())
                        .set(f64::from(q.messages));
                    metrics::gauge!("wxnotify_queue_consumers", "queue" => q.queue)
                        .set(f64::from(q.consumers));
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the queue depths failed"),
        }
    }

    /// Refreshes every [`EVERY`] until `shutdown`.
    pub async fn run(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.refresh().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }
}
