//! `wxnotify api-key create|list|revoke`: producer API keys per app.

use std::process::ExitCode;
use wxnotify_app::Application;

use anyhow::Context;
use uuid::Uuid;

#[allow(clippy::wildcard_imports)]
use wxnotify_api::producer::api_keys::*;
use wxnotify_core::config::Settings;

/// Arguments of `wxnotify api-key`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify api-key create --app default\n  wxnotify api-key create --app default --label billing-service --json\n  wxnotify api-key list --app default\n  wxnotify api-key revoke 01937c1e-7c4b-7a52-9a55-3c1f0e6f1d2a\n\nThe key is printed once, by create; only its hash is stored. Producers send it as\n`Authorization: Bearer wxn_…` to POST /v1/notifications."
)]
pub struct ApiKeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ApiKeyAction,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The API-key actions.
#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyAction {
    /// Create a key for an app and print it (once).
    Create {
        /// The configured app the key may send for.
        #[arg(long)]
        app: String,
        /// A note to recognise the key by (e.g. the service that uses it).
        #[arg(long)]
        label: Option<String>,
    },
    /// List keys (never the keys themselves).
    List {
        /// Only this app's keys.
        #[arg(long)]
        app: Option<String>,
    },
    /// Revoke a key: requests with it are refused (401) from now on.
    Revoke {
        /// The key's id (from `create` or `list`).
        id: Uuid,
        /// Refuse unless the key belongs to this app.
        #[arg(long)]
        app: Option<String>,
    },
}

/// Runs `wxnotify api-key`.
pub async fn run(args: ApiKeyArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let pool = Application::connect(settings.clone(), 2).await?.pool;
    let parse_app = |name: &str| settings.app_flag(name);
    match args.action {
        ApiKeyAction::Create { app, label } => {
            let app = parse_app(&app)?;
            let created = create(&pool, &app, label.as_deref())
                .await
                .context("storing the API key")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!(
                    "API key for app {} (shown once; store it now):",
                    created.app
                );
                println!("  {}", created.key);
                println!("id {}  prefix {}", created.id, created.prefix);
            }
        }
        ApiKeyAction::List { app } => {
            let app = app.as_deref().map(parse_app).transpose()?;
            let keys = list(&pool, app.as_ref()).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!(
                    "{:<36}  {:<12}  {:<14}  {:<20}  {:<20}  label",
                    "id", "app", "prefix", "created", "revoked"
                );
                for k in keys {
                    println!(
                        "{:<36}  {:<12}  {:<14}  {:<20}  {:<20}  {}",
                        k.id,
                        k.app,
                        k.prefix,
                        k.created_at.format("%Y-%m-%d %H:%M:%S"),
                        k.revoked_at
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_else(|| "-".into()),
                        k.label.unwrap_or_default()
                    );
                }
            }
        }
        ApiKeyAction::Revoke { id, app } => {
            let app = app.as_deref().map(parse_app).transpose()?;
            let owner: Option<String> =
                sqlx::query_scalar("SELECT app FROM api_keys WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&pool)
                    .await?;
            let belongs = match (&owner, &app) {
                (None, _) => false,
                (Some(owner), Some(app)) => owner == app.as_str(),
                (Some(_), None) => true,
            };
            let revoked = belongs && revoke(&pool, id).await?;
            if args.json {
                println!("{}", serde_json::json!({ "id": id, "revoked": revoked }));
            } else if revoked {
                println!("revoked {id}");
            } else {
                eprintln!(
                    "no active key {id}{}",
                    match &app {
                        Some(app) => format!(" for app {app}"),
                        None => String::new(),
                    }
                );
            }
            if !revoked {
                return Ok(ExitCode::from(super::EXIT_FAILURE));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
