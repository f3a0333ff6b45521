//! `wxnotify templates sync|list`: the OA's template catalog.

use std::process::ExitCode;

use serde::Serialize;

use super::{EXIT_FAILURE, EXIT_OK};
use crate::app::{Application, Wechat};
use crate::config::Settings;
use crate::domain::AppName;
use crate::templates::{Catalog, CatalogTemplate, SyncTrigger, sync_app};

/// Arguments of `wxnotify templates`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify templates sync\n  wxnotify templates sync --app shop --json\n  wxnotify templates list\n  wxnotify templates list --app shop --json\n\nThe worker also syncs every app's templates every few minutes and when a send answers 40037.\nJobs are checked against this list by `wxnotify enqueue` and by the worker before sending.\nExit codes: 0 ok; 1 WeChat refused or could not be reached; 2 bad settings; 3 Postgres unreachable."
)]
pub struct TemplatesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TemplatesCommand,
}

/// `wxnotify templates` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TemplatesCommand {
    /// Fetch the OA's private templates from WeChat into the catalog (replacing the old list).
    Sync(Selection),
    /// Print the catalog: each template's id, title and placeholders.
    List(Selection),
}

/// Which apps, and how to print.
#[derive(Debug, clap::Args)]
pub struct Selection {
    /// Only this app (default: every configured app).
    #[arg(long, value_name = "NAME")]
    pub app: Option<AppName>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct AppListing<'a> {
    app: &'a str,
    synced_at: Option<chrono::DateTime<chrono::Utc>>,
    templates: Vec<&'a CatalogTemplate>,
}

/// Runs `wxnotify templates`.
pub async fn run(args: TemplatesArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let selection = match &args.command {
        TemplatesCommand::Sync(s) | TemplatesCommand::List(s) => s,
    };
    let apps: Vec<AppName> = match &selection.app {
        Some(app) => vec![settings.app(app)?.name.clone()],
        None => settings.apps.iter().map(|a| a.name.clone()).collect(),
    };
    let app = Application::connect(settings, 2).await?;
    let pool = &app.pool;
    let mut code = EXIT_OK;
    if let TemplatesCommand::Sync(_) = &args.command {
        let Wechat { client, tokens } = app.wechat()?;
        for name in &apps {
            match sync_app(pool, &tokens, &client, name, SyncTrigger::Command).await {
                Ok(list) if !selection.json => {
                    println!("{name}: {} templates synced", list.len());
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("error: {name}: {e}");
                    code = EXIT_FAILURE;
                }
            }
        }
        if !selection.json {
            return Ok(ExitCode::from(code));
        }
    }
    let catalog = Catalog::load(pool).await?;
    let listings: Vec<AppListing<'_>> = apps
        .iter()
        .map(|app| {
            let c = catalog.app(app);
            let mut templates: Vec<&CatalogTemplate> = c
                .map(|c| c.templates.values().collect())
                .unwrap_or_default();
            templates.sort_by(|a, b| a.template_id.cmp(&b.template_id));
            AppListing {
                app: app.as_str(),
                synced_at: c.and_then(|c| c.synced_at),
                templates,
            }
        })
        .collect();
    if selection.json {
        println!("{}", serde_json::to_string(&listings)?);
    } else {
        print_listings(&listings);
    }
    Ok(ExitCode::from(code))
}

fn print_listings(listings: &[AppListing<'_>]) {
    for l in listings {
        match l.synced_at {
            None => println!("{}: never synced (run `wxnotify templates sync`)", l.app),
            Some(at) => println!("{}: {} templates, synced {at}", l.app, l.templates.len()),
        }
        for t in &l.templates {
            println!(
                "  {}  {}  [{}]",
                t.template_id,
                t.title,
                t.placeholders.join(", ")
            );
        }
    }
}
