//! The worker's gauges of shared state, read every [`EVERY`]: each app's quota today
//! (`wxnotify_quota_*`, the numbers `wxnotify status` shows: WeChat's count at the last read
//! plus the sends recorded on the ledger since), the depth of every queue
//! (`wxnotify_queue_messages`, `wxnotify_queue_consumers`) and the live workers
//! (`wxnotify_workers_live`).
//!
//! The quota is re-counted here rather than only when WeChat is asked (every few minutes): a
//! gauge set at the read would stay at the morning's number while the day's sends go out.
//! The queue depths are read on one RabbitMQ connection kept open between readings (opened
//! again after it is lost), not a connection per reading.

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
    /// The connection the queue depths are read on, while it works.
    broker: tokio::sync::Mutex<Option<lapin::Connection>>,
}

impl Gauges {
    /// Gauges of the apps and queues of `settings`, read from `pool` and RabbitMQ.
    pub fn new(settings: &Settings, pool: PgPool, topology: Topology) -> Self {
        Gauges {
            pool,
            apps: settings.apps.iter().map(|a| a.name.clone()).collect(),
            settings: settings.clone(),
            topology,
            broker: tokio::sync::Mutex::new(None),
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
        match self.queue_depths().await {
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

    /// The queues' depths on the kept connection (opened first when there is none or it broke;
    /// dropped after an error, so the next reading opens a new one).
    async fn queue_depths(&self) -> anyhow::Result<Vec<quota::status::QueueDepth>> {
        let mut broker = self.broker.lock().await;
        if !broker.as_ref().is_some_and(|c| c.status().connected()) {
            let url = &self.settings.amqp_url;
            *broker = Some(wxnotify_core::queue::connect(url, "wxnotify worker gauges").await?);
        }
        let connection = broker.as_ref().expect("connected above");
        let depths = quota::status::queue_depths_on(connection, &self.topology).await;
        if depths.is_err()
            && let Some(lost) = broker.take()
        {
            let _ = lost.close(200, "gauges".into()).await;
        }
        depths
    }

    /// Refreshes every [`EVERY`] until `shutdown`, then closes its connection.
    pub async fn run(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.refresh().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
        if let Some(connection) = self.broker.lock().await.take() {
            let close = connection.close(200, "worker stopping".into());
            let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
        }
    }
}
