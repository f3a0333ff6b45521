//! What `wxnotify status` shows (the command is `crate::commands::status`): per app whether sending is paused and today's quota (limit, used,
//! remaining), the depth of every queue, and the live worker processes.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::QuotaToday;
use sqlx::PgPool;

use crate::config::Settings;
use crate::domain::AppName;
use crate::queue::Topology;

/// A worker is live when it heartbeat this recently (seconds).
const LIVE_WITHIN_S: f64 = 10.0;

/// One app's line.
#[derive(Debug, Serialize)]
pub struct AppStatus {
    /// The app.
    pub app: String,
    /// Whether sending is paused (45009).
    pub paused: bool,
    /// Until when.
    pub paused_until: Option<DateTime<Utc>>,
    /// Why.
    pub pause_reason: Option<String>,
    /// Today's quota; `null` when it was never read.
    pub quota: Option<QuotaToday>,
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Per app.
    pub apps: Vec<AppStatus>,
    /// Messages waiting per queue; `null` when RabbitMQ could not be asked.
    pub queues: Option<Vec<QueueDepth>>,
    /// Why the queues are missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues_error: Option<String>,
    /// Live worker processes.
    pub workers: i64,
}

/// One queue's depth.
#[derive(Debug, Serialize)]
pub struct QueueDepth {
    /// The queue.
    pub queue: String,
    /// Ready messages.
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// Every app's pause and quota at `now`.
pub async fn app_statuses(
    pool: &PgPool,
    apps: &[AppName],
    now: DateTime<Utc>,
) -> Result<Vec<AppStatus>, sqlx::Error> {
    let mut out = Vec::new();
    for app in apps {
        let pause: Option<(Option<DateTime<Utc>>, Option<String>)> =
            sqlx::query_as("SELECT paused_until, pause_reason FROM apps WHERE name = $1")
                .bind(app.as_str())
                .fetch_optional(pool)
                .await?;
        let (paused_until, pause_reason) = pause.unwrap_or_default();
        let paused = paused_until.is_some_and(|u| u > now);
        out.push(AppStatus {
            app: app.to_string(),
            paused,
            paused_until: paused_until.filter(|_| paused),
            pause_reason: pause_reason.filter(|_| paused),
            quota: super::today(pool, app, now).await?,
        });
    }
    Ok(out)
}

/// Live worker processes (heartbeat within the last few seconds).
pub async fn live_workers(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM workers WHERE heartbeat_at > now() - make_interval(secs => $1)",
    )
    .bind(LIVE_WITHIN_S)
    .fetch_one(pool)
    .await
}

/// The depth of every queue of `topology` (one passive declaration each).
pub async fn queue_depths(
    settings: &Settings,
    topology: &Topology,
) -> anyhow::Result<Vec<QueueDepth>> {
    let connection = crate::queue::connect(&settings.amqp_url, "wxnotify status").await?;
    let mut out = Vec::new();
    for queue in topology.queues() {
        // A failed passive declaration closes its channel: one channel per queue.
        let channel = connection.create_channel().await?;
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match channel
            .queue_declare(
                queue.as_str().into(),
                passive,
                lapin::types::FieldTable::default(),
            )
            .await
        {
            Ok(q) => {
                out.push(QueueDepth {
                    queue,
                    messages: q.message_count(),
                    consumers: q.consumer_count(),
                });
                let _ = channel.close(200, "status".into()).await;
            }
            Err(e) if e.is_amqp_soft_error() => {
                anyhow::bail!("queue {queue} does not exist (run `wxnotify migrate`)")
            }
            Err(e) => return Err(e.into()),
        }
    }
    let _ = connection.close(200, "status".into()).await;
    Ok(out)
}
