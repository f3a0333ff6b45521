//! `wxnotify status`: apps (paused, today's quota), queue depths and live workers.

use std::process::ExitCode;

use chrono::Utc;

use super::{EXIT_FAILURE, EXIT_OK};
use wxnotify_app::{Application, Wechat};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_core::queue::Topology;
use wxnotify_services::quota::ReadTrigger;
use wxnotify_services::quota::status::{Status, app_statuses, live_workers, queue_depths};

/// Arguments of `wxnotify status`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify status\n  wxnotify status --json\n  wxnotify status --refresh-quota   # ask WeChat (openapi/quota/get) first\n\nThe quota is WeChat's answer at the last read (the worker reads it every few minutes and after\na 45009) plus the sends recorded since, per Beijing-time day (the workers' wxnotify_quota_used\nsays the same). Live workers are listed with host, pid, lanes, since when and the last heartbeat\n(`live_workers` in --json).\nExit codes: 0 ok; 1 RabbitMQ or WeChat could not be asked (the rest is still printed);\n2 bad settings; 3 Postgres unreachable."
)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Read every app's quota from WeChat before printing.
    #[arg(long)]
    pub refresh_quota: bool,
}

/// Runs `wxnotify status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let app = Application::connect(settings, 2).await?;
    let (settings, pool) = (&app.settings, &app.pool);
    let apps: Vec<AppName> = settings.apps.iter().map(|a| a.name.clone()).collect();
    let mut code = EXIT_OK;
    if args.refresh_quota {
        let Wechat { client, tokens } = app.wechat()?;
        for app in &apps {
            if let Err(e) =
                wxnotify_services::quota::read(pool, &tokens, &client, app, ReadTrigger::Command)
                    .await
            {
                eprintln!("error: {app}: reading the quota failed: {e}");
                code = EXIT_FAILURE;
            }
        }
    }
    let topology = Topology::new(settings.queue_prefix.clone());
    let (queues, queues_error) = match queue_depths(settings, &topology).await {
        Ok(q) => (Some(q), None),
        Err(e) => {
            code = EXIT_FAILURE;
            (None, Some(format!("{e:#}")))
        }
    };
    let live = live_workers(pool).await?;
    let status = Status {
        apps: app_statuses(pool, &apps, Utc::now()).await?,
        queues,
        queues_error,
        workers: i64::try_from(live.len()).unwrap_or(i64::MAX),
        live_workers: live,
    };
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        print(&status);
    }
    Ok(ExitCode::from(code))
}

fn print(status: &Status) {
    println!("apps:");
    for a in &status.apps {
        let reason = a.pause_reason.as_deref().unwrap_or("paused");
        let pause = match (a.paused, &a.paused_until) {
            (false, _) => "sending".into(),
            (true, Some(until)) => format!("PAUSED until {until} ({reason})"),
            (true, None) => format!("PAUSED until WeChat answers normally ({reason})"),
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
    let now = Utc::now();
    for w in &status.live_workers {
        let lanes = if w.lanes.is_empty() {
            "-".to_owned()
        } else {
            w.lanes.join(",")
        };
        let ago = (now - w.heartbeat_at).num_milliseconds().max(0) as f64 / 1000.0;
        println!(
            "  {} pid {}: lanes {lanes}; since {}; last heartbeat {ago:.1} s ago",
            w.hostname,
            w.pid,
            w.since.format("%Y-%m-%d %H:%M:%S UTC"),
        );
    }
}
