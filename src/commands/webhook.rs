//! `wxnotify webhook set|list|remove`: signed outcome webhooks per app.

use std::process::ExitCode;
use wxnotify_app::Application;

use anyhow::Context;
use serde_json::Value;

#[allow(clippy::wildcard_imports)]
use wxnotify_api::producer::webhooks::*;
use wxnotify_core::config::Settings;

/// Arguments of `wxnotify webhook`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify webhook set --app default --url https://shop.example.com/hooks/wxnotify\n  wxnotify webhook set --app default --url https://shop.example.com/hooks/wxnotify --sent --json\n  wxnotify webhook set --app default --url https://shop.example.com/hooks/wxnotify --rotate-secret\n  wxnotify webhook list\n  wxnotify webhook remove --app default\n\nEvents: dead, receipt_failed, and sent with --sent. Each POST is signed in the Standard Webhooks format:\nwebhook-id, webhook-timestamp and webhook-signature: v1,<base64 HMAC-SHA256>; the secret\n(whsec_...) is printed once, when it is made. `wxnotify serve` posts the events."
)]
pub struct WebhookArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: WebhookAction,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The webhook actions.
#[derive(Debug, clap::Subcommand)]
pub enum WebhookAction {
    /// Set (or change) an app's webhook URL.
    Set {
        /// The configured app.
        #[arg(long)]
        app: String,
        /// Where to POST events (http or https).
        #[arg(long)]
        url: url::Url,
        /// Also announce every send WeChat accepted.
        #[arg(long)]
        sent: bool,
        /// Make a new signing secret (the old one stops working).
        #[arg(long)]
        rotate_secret: bool,
    },
    /// List the webhooks (never their secrets) and their pending and failed events.
    List,
    /// Remove an app's webhook (its pending events are dropped).
    Remove {
        /// The configured app.
        #[arg(long)]
        app: String,
    },
}

/// Runs `wxnotify webhook`.
pub async fn run(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let pool = Application::connect(settings.clone(), 2).await?.pool;
    let parse_app = |name: &str| settings.app_flag(name);
    match args.action {
        WebhookAction::Set {
            app,
            url,
            sent,
            rotate_secret,
        } => {
            let app = parse_app(&app)?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(wxnotify_core::config::ConfigError::Invalid {
                    name: "--url".into(),
                    reason: format!("the scheme is {:?}", url.scheme()),
                    hint: "Use an http or https URL.",
                }
                .into());
            }
            let secret = set(&pool, &settings.secrets, &app, &url, sent, rotate_secret)
                .await
                .context("storing the webhook")?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"app": app, "url": url, "sent": sent, "secret": secret})
                );
            } else {
                println!(
                    "webhook of app {app}: {url} (events: dead, receipt_failed{})",
                    if sent { ", sent" } else { "" }
                );
                match secret {
                    Some(s) => println!("signing secret (shown once; store it now):\n  {s}"),
                    None => println!("signing secret unchanged (--rotate-secret makes a new one)"),
                }
            }
        }
        WebhookAction::List => {
            let rows: Vec<(String, String, bool, i64, i64)> = sqlx::query_as(
                "SELECT w.app, w.url, w.send_sent,
                        (SELECT count(*) FROM webhook_outbox o WHERE o.app = w.app AND delivered_at IS NULL AND failed_at IS NULL),
                        (SELECT count(*) FROM webhook_outbox o WHERE o.app = w.app AND failed_at IS NOT NULL)
                 FROM app_webhooks w ORDER BY w.app",
            )
            .fetch_all(&pool)
            .await?;
            if args.json {
                let list: Vec<Value> = rows
                    .iter()
                    .map(|(app, url, sent, pending, failed)| {
                        serde_json::json!({"app": app, "url": url, "sent": sent, "pending": pending, "failed": failed})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<12}  {:<5}  {:>8}  {:>7}  url",
                    "app", "sent", "pending", "failed"
                );
                for (app, url, sent, pending, failed) in rows {
                    println!("{app:<12}  {sent:<5}  {pending:>8}  {failed:>7}  {url}");
                }
            }
        }
        WebhookAction::Remove { app } => {
            let app = parse_app(&app)?;
            let removed = remove(&pool, &app).await?;
            if args.json {
                println!("{}", serde_json::json!({"app": app, "removed": removed}));
            } else if removed {
                println!("webhook of app {app} removed");
            } else {
                eprintln!("app {app} has no webhook");
            }
            if !removed {
                return Ok(ExitCode::from(super::EXIT_FAILURE));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
