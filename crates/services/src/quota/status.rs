//! What `wxnotify status` shows (the command is `wxnotify status`): per app whether sending is paused and today's quota (limit, used,
//! remaining), the depth of every queue, and the live worker processes.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::QuotaToday;
use sqlx::PgPool;

use crate::app_pause::{self, PauseCause};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_core::queue::Topology;

/// A worker is live when it heartbeat this recently (seconds).
const LIVE_WITHIN_S: f64 = 10.0;

/// One app's line.
#[derive(Debug, Serialize)]
pub struct AppStatus {
    /// The app.
    pub app: String,
    /// Whether sending is paused: WeChat's daily quota is used up (45009), an operator paused
    /// it, or WeChat refuses the account itself (`pause_cause` `account`, until WeChat answers
    /// normally again).
    pub paused: bool,
    /// Until when, for a timed pause (`null` for a suspension: it has no end time).
    pub paused_until: Option<DateTime<Utc>>,
    /// `account`, `quota` or `manual`.
    pub pause_cause: Option<PauseCause>,
    /// Why, in words; names WeChat's errcode and the fix for a suspension.
    pub pause_reason: Option<String>,
    /// WeChat's errcode that suspended the app.
    pub pause_errcode: Option<i64>,
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
    /// How many worker processes are live.
    pub workers: i64,
    /// The live worker processes, the longest running first.
    pub live_workers: Vec<LiveWorker>,
}

/// A live worker process (one row of `workers` whose heartbeat is recent).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LiveWorker {
    /// Its host.
    pub hostname: String,
    /// Its process id on that host.
    pub pid: i32,
    /// The lanes it consumes (`jobs`, `bulk`).
    pub lanes: Vec<String>,
    /// When it started.
    pub since: DateTime<Utc>,
    /// Its latest heartbeat.
    pub heartbeat_at: DateTime<Utc>,
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
        let pause = app_pause::read(pool, app.as_str()).await?;
        let pause = pause.as_ref();
        out.push(AppStatus {
            app: app.to_string(),
            paused: pause.is_some_and(|p| p.paused(now)),
            paused_until: pause.and_then(|p| p.paused_until(now)),
            pause_cause: pause.and_then(|p| p.cause_at(now)),
            pause_reason: pause.and_then(|p| p.reason_at(now)),
            pause_errcode: pause.and_then(|p| p.suspension.as_ref().map(|s| s.errcode)),
            quota: super::today(pool, app, now).await?,
        });
    }
    Ok(out)
}

/// Live worker processes (heartbeat within the last few seconds), the longest running first.
pub async fn live_workers(pool: &PgPool) -> Result<Vec<LiveWorker>, sqlx::Error> {
    sqlx::query_as(
        "SELECT hostname, pid, lanes, started_at AS since, heartbeat_at FROM workers
         WHERE heartbeat_at > now() - make_interval(secs => $1)
         ORDER BY started_at, hostname, pid",
    )
    .bind(LIVE_WITHIN_S)
    .fetch_all(pool)
    .await
}

/// The depth of every queue of `topology` (one passive declaration each), on a connection of
/// its own.
pub async fn queue_depths(
    settings: &Settings,
    topology: &Topology,
) -> anyhow::Result<Vec<QueueDepth>> {
    let connection = wxnotify_core::queue::connect(&settings.amqp_url, "wxnotify status").await?;
    let out = queue_depths_on(&connection, topology).await;
    let _ = connection.close(200, "status".into()).await;
    out
}

/// The depth of every queue of `topology` on an open `connection` (one passive declaration
/// each, on a channel of its own).
pub async fn queue_depths_on(
    connection: &lapin::Connection,
    topology: &Topology,
) -> anyhow::Result<Vec<QueueDepth>> {
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
    Ok(out)
}
