//! `wxnotify admin-user add|list|disable|rotate`: named admins of the admin API and console,
//! each with a personal token (printed once) and a role.

use std::process::ExitCode;

use anyhow::Context;
use wxnotify_api::admin::auth::Role;
use wxnotify_api::admin::store::{self, AuditEntry};
use wxnotify_api::admin::users::{self, IssuedToken, UserError};
use wxnotify_app::Application;
use wxnotify_core::config::{ConfigError, Settings};

/// Arguments of `wxnotify admin-user`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify admin-user add alice --role admin\n  wxnotify admin-user add bob@example.com --role viewer --json\n  wxnotify admin-user list\n  wxnotify admin-user list --json\n  wxnotify admin-user rotate alice\n  wxnotify admin-user disable bob@example.com\n\nThe token is printed once, by add and rotate; only its SHA-256 is stored. Send it as\n`Authorization: Bearer wxa_…` to /admin/api/... or paste it into the console's login form.\nThe audit trail names the person. Disabling a user or rotating their token ends their console\nsessions at once. With no WXNOTIFY_ADMIN_TOKEN / WXNOTIFY_VIEWER_TOKEN, restart `serve` after\nadding the first user: the admin surface is on when users exist at start."
)]
pub struct AdminUserArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AdminUserAction,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The admin-user actions.
#[derive(Debug, clap::Subcommand)]
pub enum AdminUserAction {
    /// Add a person and print their token (once).
    #[command(
        after_help = "Examples:\n  wxnotify admin-user add alice --role admin\n  wxnotify admin-user add bob@example.com --role viewer --json"
    )]
    Add {
        /// Their name as the audit trail shows it: 1 to 64 letters, digits, '.', '_', '-', '@'.
        name: String,
        /// `admin` (reads and acts) or `viewer` (reads only).
        #[arg(long, value_parser = ["admin", "viewer"])]
        role: String,
    },
    /// List the people (never their tokens).
    #[command(
        after_help = "Examples:\n  wxnotify admin-user list\n  wxnotify admin-user list --json"
    )]
    List,
    /// Disable a person: their token is refused and their console sessions end at once.
    #[command(after_help = "Examples:\n  wxnotify admin-user disable alice")]
    Disable {
        /// The name (from `list`).
        name: String,
    },
    /// Give a person a new token (printed once); the old one and their sessions end at once.
    #[command(after_help = "Examples:\n  wxnotify admin-user rotate alice")]
    Rotate {
        /// The name (from `list`).
        name: String,
    },
}

/// The CLI's audit row for `action` on `name`.
async fn audit(pool: &sqlx::PgPool, action: &str, detail: serde_json::Value) -> anyhow::Result<()> {
    store::audit_as(
        pool,
        "cli",
        "admin",
        "cli",
        &AuditEntry::one(action, detail),
    )
    .await
    .context("writing the audit row")
}

fn print_token(issued: &IssuedToken, json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(issued)?);
    } else {
        println!(
            "{what} token of {} (role {}; shown once, store it now):",
            issued.name,
            issued.role.as_str()
        );
        println!("  {}", issued.token);
        println!(
            "prefix {}  generation {}",
            issued.token_prefix, issued.generation
        );
    }
    Ok(())
}

/// A refused change: bad names are configuration errors (exit 2), the rest failures (exit 1).
fn refused(e: UserError) -> anyhow::Result<ExitCode> {
    match e {
        UserError::BadName(_) => Err(ConfigError::Invalid {
            name: "NAME".into(),
            reason: e.to_string(),
            hint: "Pick another name.",
        }
        .into()),
        UserError::Db(e) => Err(anyhow::Error::new(e).context("the admin-user change failed")),
        other => {
            eprintln!("error: {other}");
            Ok(ExitCode::from(super::EXIT_FAILURE))
        }
    }
}

/// Runs `wxnotify admin-user`.
pub async fn run(args: AdminUserArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let pool = Application::connect(settings, 2).await?.pool;
    match args.action {
        AdminUserAction::Add { name, role } => {
            let role = Role::parse(&role).unwrap_or(Role::Viewer);
            let issued = match users::add(&pool, &name, role).await {
                Ok(issued) => issued,
                Err(e) => return refused(e),
            };
            audit(
                &pool,
                "admin-user add",
                serde_json::json!({ "name": name, "role": role.as_str() }),
            )
            .await?;
            print_token(&issued, args.json, "personal")?;
        }
        AdminUserAction::List => {
            let rows = users::list(&pool).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24}  {:<6}  {:<10}  {:>3}  {:<19}  {:<19}  disabled",
                    "name", "role", "prefix", "gen", "created", "rotated"
                );
                let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".into())
                };
                for u in rows {
                    println!(
                        "{:<24}  {:<6}  {:<10}  {:>3}  {:<19}  {:<19}  {}",
                        u.name,
                        u.role,
                        u.token_prefix,
                        u.generation,
                        time(Some(u.created_at)),
                        time(u.rotated_at),
                        time(u.disabled_at)
                    );
                }
            }
        }
        AdminUserAction::Disable { name } => {
            let changed = match users::disable(&pool, &name).await {
                Ok(changed) => changed,
                Err(e) => return refused(e),
            };
            if changed {
                audit(
                    &pool,
                    "admin-user disable",
                    serde_json::json!({ "name": name }),
                )
                .await?;
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "name": name, "disabled": true, "changed": changed })
                );
            } else if changed {
                println!(
                    "disabled {name}: their token and console sessions are refused from now on"
                );
            } else {
                println!("{name} was disabled already");
            }
        }
        AdminUserAction::Rotate { name } => {
            let issued = match users::rotate(&pool, &name).await {
                Ok(issued) => issued,
                Err(e) => return refused(e),
            };
            audit(
                &pool,
                "admin-user rotate",
                serde_json::json!({ "name": name, "generation": issued.generation }),
            )
            .await?;
            print_token(&issued, args.json, "new")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
