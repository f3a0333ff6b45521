//! `wxnotify status`: per app whether sending is paused and today's quota (limit, used,
//! remaining), the depth of every queue, and the live worker processes.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::{QuotaToday, ReadTrigger};
use crate::cli::{EXIT_FAILURE, EXIT_OK};
use crate::config::Settings;
use crate::domain::AppName;
use crate::queue::Topology;
use crate::wechat::client::ClientOptions;
use crate::wechat::{TokenStore, WechatClient};

/// A worker is live when it heartbeat this recently (seconds).
const LIVE_WITHIN_S: f64 = 10.0;

/// Arguments of `wxnotify status`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify status\n  wxnotify status --json\n  wxnotify status --refresh-quota   # ask WeChat (openapi/quota/get) first\n\nThe quota is WeChat's answer at the last read (the worker reads it every few minutes and after\na 45009) plus the sends recorded since, per Beijing-time day.\nExit codes: 0 ok; 1 RabbitMQ or WeChat could not be asked (the rest is still printed);\n2 bad settings; 3 Postgres unreachable."
)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Read every app's quota from WeChat before printing.
    #[arg(long)]
    pub refresh_quota: bool,
}

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

/// Runs `wxnotify status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let pool = crate::db::connect(&settings.database_url, 2).await?;
    crate::db::register_apps(&pool, &settings.apps).await?;
    let apps: Vec<AppName> = settings.apps.iter().map(|a| a.name.clone()).collect();
    let mut code = EXIT_OK;
    if args.refresh_quota {
        let client =
            WechatClient::new(settings.wechat_api_base.clone(), &ClientOptions::default())?;
        let tokens = TokenStore::new(pool.clone(), client.clone(), &settings.apps);
        for app in &apps {
            if let Err(e) = super::read(&pool, &tokens, &client, app, ReadTrigger::Command).await {
                eprintln!("error: {app}: reading the quota failed: {e}");
                code = EXIT_FAILURE;
            }
        }
    }
    let topology = Topology::new(settings.queue_prefix.clone());
    let (queues, queues_error) = match queue_depths(&settings, &topology).await {
        Ok(q) => (Some(q), None),
        Err(e) => {
            code = EXIT_FAILURE;
            (None, Some(format!("{e:#}")))
        }
    };
    let status = Status {
        apps: app_statuses(&pool, &apps, Utc::now()).await?,
        queues,
        queues_error,
        workers: live_workers(&pool).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        print(&status);
    }
    Ok(ExitCode::from(code))
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

async fn queue_depths(settings: &Settings, topology: &Topology) -> anyhow::Result<Vec<QueueDepth>> {
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

fn print(status: &Status) {
    println!("apps:");
    for a in &status.apps {
        let pause = match (&a.paused_until, &a.pause_reason) {
            (Some(until), reason) => format!(
                "PAUSED until {until} ({})",
                reason.as_deref().unwrap_or("quota")
            ),
            _ => "sending".into(),
        };
        let quota = match &a.quota {
            Some(q) => format!(
                "quota today {} used of {}, {} remaining (read {})",
                q.used, q.daily_limit, q.remaining, q.read_at
            ),
            None => "quota never read".into(),
        };
        println!("  {}: {pause}; {quota}", a.app);
    }
    match (&status.queues, &status.queues_error) {
        (Some(queues), _) => {
            println!("queues:");
            for q in queues {
                println!(
                    "  {}: {} messages, {} consumers",
                    q.queue, q.messages, q.consumers
                );
            }
        }
        (None, err) => println!("queues: unavailable ({})", err.as_deref().unwrap_or("?")),
    }
    println!("workers: {} live", status.workers);
}
