//! `wxnotify templates sync|list|add|remove`: the OA's template catalog, and the Mini
//! Program's subscribe templates beside it (synced and listed with their channel).

use std::process::ExitCode;

use serde::Serialize;

use super::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};
use wxnotify_app::{Application, Wechat};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_services::templates::manual::{self, ManualError, ManualTemplate};
use wxnotify_services::templates::{
    AppListing, Catalog, CatalogTemplate, SubscribeCatalog, SubscribeCatalogTemplate, SyncTrigger,
    sync_app, sync_subscribe_app,
};

/// Arguments of `wxnotify templates`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify templates sync\n  wxnotify templates sync --app default --json\n  wxnotify templates list\n  wxnotify templates list --app default --json\n  wxnotify templates add --app default --id ngqIpbwh8bUf... --title 订单发货提醒 \\\n      --content '商品：{{thing1.DATA}} 时间：{{time2.DATA}}'\n  wxnotify templates remove --app default --id ngqIpbwh8bUf...\n\nWeChat's get_all_private_template lists historical templates (keyword1 …) only, never category\ntemplates (thing1, time2 …). A job naming a template the catalog does not hold is sent, and\nWeChat decides (40037 if it does not know it). Register a category template by hand (`add`,\nsource `manual`) so its jobs are checked before sending: keys exactly its placeholders, value\nrules. A sync never deletes manual templates; if WeChat lists the same id, its listing wins\n(source `api`). A listed template that a later sync no longer finds is kept as removed: jobs\nnaming it are refused as deleted.\n\nWith a Mini Program configured, sync also fetches its subscribe templates\n(wxaapi/newtmpl/gettemplate, a complete list: one-time or long-term, enum values), and list shows\nthem with channel mp_subscribe (the OA's: oa_template); in --json they are under\nsubscribe_templates and subscribe_removed.\n\nThe worker also syncs every app's templates every few minutes and when a send answers 40037.\nJobs are checked against this catalog by `wxnotify enqueue` and by the worker before sending.\nExit codes: 0 ok; 1 WeChat refused or could not be reached, or the template cannot be added or\nremoved (listed by WeChat, not found); 2 bad settings or arguments; 3 Postgres unreachable."
)]
pub struct TemplatesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TemplatesCommand,
}

/// `wxnotify templates` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TemplatesCommand {
    /// Fetch the OA's private templates from WeChat into the catalog (manual templates stay;
    /// listed templates that vanished are kept as removed).
    Sync(Selection),
    /// Print the catalog: each template's id, source (api or manual), title and placeholders.
    List(Selection),
    /// Register a template by hand (source `manual`), e.g. a category template WeChat's API
    /// does not list, so that its jobs are checked before sending.
    Add(AddArgs),
    /// Remove a template registered by hand (its jobs are then sent unchecked; WeChat decides).
    Remove(RemoveArgs),
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

/// `wxnotify templates add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The configured app.
    #[arg(long, value_name = "NAME")]
    pub app: String,
    /// The template id, as the OA's admin page shows it.
    #[arg(long, value_name = "TEMPLATE_ID")]
    pub id: String,
    /// The template's content, with its `{{key.DATA}}` placeholders (copy it from the OA's
    /// admin page): the keys of a job's data must be exactly these.
    #[arg(long, value_name = "TEXT")]
    pub content: String,
    /// Its title (for people; optional).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub title: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `wxnotify templates remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The configured app.
    #[arg(long, value_name = "NAME")]
    pub app: String,
    /// The id of a template registered by hand.
    #[arg(long, value_name = "TEMPLATE_ID")]
    pub id: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// What `add` and `remove` print with `--json`.
#[derive(Serialize)]
struct Changed<'a> {
    app: &'a str,
    /// `added`, `updated`, `replaced_removed` or `removed`.
    action: &'a str,
    template: &'a CatalogTemplate,
}

/// Runs `wxnotify templates`.
pub async fn run(args: TemplatesArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let selection = match args.command {
        TemplatesCommand::Add(add_args) => return add(settings, add_args).await,
        TemplatesCommand::Remove(remove_args) => return remove(settings, remove_args).await,
        TemplatesCommand::Sync(ref s) | TemplatesCommand::List(ref s) => s,
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
                    println!("{name}: {} templates listed by WeChat", list.len());
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("error: {name}: {e}");
                    code = EXIT_FAILURE;
                }
            }
            let Some(config) = app.settings.apps.iter().find(|a| &a.name == name) else {
                continue;
            };
            match sync_subscribe_app(pool, &client, config).await {
                Ok(Some(list)) if !selection.json => {
                    println!(
                        "{name}: {} subscribe templates listed by the Mini Program",
                        list.len()
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("error: {name}: Mini Program subscribe templates: {e}");
                    code = EXIT_FAILURE;
                }
            }
        }
        if !selection.json {
            return Ok(ExitCode::from(code));
        }
    }
    let catalog = Catalog::load(pool).await?;
    let mut listings = Vec::new();
    for name in &apps {
        listings.push(Listing::of(
            catalog.listing(name),
            SubscribeCatalog::load(pool, name).await?,
        ));
    }
    if selection.json {
        println!("{}", serde_json::to_string(&listings)?);
    } else {
        print_listings(&listings);
    }
    Ok(ExitCode::from(code))
}

/// A template as `list` shows it: its channel, then its fields.
#[derive(Serialize)]
struct Listed<T: Serialize> {
    /// `oa_template` or `mp_subscribe`.
    channel: &'static str,
    #[serde(flatten)]
    template: T,
}

/// One app as `list --json` shows it: the OA's catalog (as before, each template with its
/// channel) and the Mini Program's subscribe templates.
#[derive(Serialize)]
struct Listing {
    app: String,
    synced_at: Option<chrono::DateTime<chrono::Utc>>,
    templates: Vec<Listed<CatalogTemplate>>,
    removed: Vec<Listed<CatalogTemplate>>,
    subscribe_synced_at: Option<chrono::DateTime<chrono::Utc>>,
    subscribe_templates: Vec<Listed<SubscribeCatalogTemplate>>,
    subscribe_removed: Vec<Listed<SubscribeCatalogTemplate>>,
}

impl Listing {
    fn of(oa: AppListing, mp: SubscribeCatalog) -> Listing {
        let oa_row = |template| Listed {
            channel: "oa_template",
            template,
        };
        let mp_row = |template| Listed {
            channel: "mp_subscribe",
            template,
        };
        let (live, gone): (Vec<_>, Vec<_>) = mp
            .sorted()
            .into_iter()
            .partition(|t| t.removed_at.is_none());
        Listing {
            app: oa.app,
            synced_at: oa.synced_at,
            templates: oa.templates.into_iter().map(oa_row).collect(),
            removed: oa.removed.into_iter().map(oa_row).collect(),
            subscribe_synced_at: mp.synced_at,
            subscribe_templates: live.into_iter().map(mp_row).collect(),
            subscribe_removed: gone.into_iter().map(mp_row).collect(),
        }
    }
}

async fn add(settings: Settings, args: AddArgs) -> anyhow::Result<ExitCode> {
    let app_name = settings.app_flag(&args.app)?;
    let template = match ManualTemplate::parse(&args.id, &args.title, &args.content) {
        Ok(t) => t,
        Err(e) => return Ok(refused(&e)),
    };
    let app = Application::connect(settings, 1).await?;
    let added = match manual::add(&app.pool, &app_name, &template).await {
        Ok(added) => added,
        Err(ManualError::Db(e)) => return Err(e.into()),
        Err(e) => return Ok(refused(&e)),
    };
    let action = match added.replaced {
        None => "added",
        Some(wxnotify_services::templates::TemplateSource::Manual) => "updated",
        Some(wxnotify_services::templates::TemplateSource::Api) => "replaced_removed",
    };
    if args.json {
        let changed = Changed {
            app: app_name.as_str(),
            action,
            template: &added.template,
        };
        println!("{}", serde_json::to_string(&changed)?);
    } else {
        let t = &added.template;
        println!(
            "{app_name}: template {} {} (source manual), keys [{}]",
            t.template_id,
            action.replace('_', " "),
            t.placeholders.join(", ")
        );
        println!(
            "Jobs naming it are checked against these keys by `wxnotify enqueue` and the producer \
             API at once, and by running workers after their next catalog refresh (within 5 \
             minutes)."
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}

async fn remove(settings: Settings, args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let app_name = settings.app_flag(&args.app)?;
    let app = Application::connect(settings, 1).await?;
    let removed = match manual::remove(&app.pool, &app_name, args.id.trim()).await {
        Ok(removed) => removed,
        Err(ManualError::Db(e)) => return Err(e.into()),
        Err(e) => return Ok(refused(&e)),
    };
    if args.json {
        let changed = Changed {
            app: app_name.as_str(),
            action: "removed",
            template: &removed,
        };
        println!("{}", serde_json::to_string(&changed)?);
    } else {
        println!(
            "{app_name}: manual template {} removed; its jobs are sent unchecked (WeChat decides)",
            removed.template_id
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// Prints why an add or a remove was refused; the exit code: 2 for bad arguments, else 1.
fn refused(e: &ManualError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(match e {
        ManualError::Invalid(_) | ManualError::UnknownApp(_) => EXIT_CONFIG,
        _ => EXIT_FAILURE,
    })
}

fn print_listings(listings: &[Listing]) {
    for l in listings {
        match l.synced_at {
            None => println!(
                "{}: never synced (run `wxnotify templates sync`); {} manual templates",
                l.app,
                l.templates.len()
            ),
            Some(at) => println!("{}: {} templates, synced {at}", l.app, l.templates.len()),
        }
        for Listed {
            channel,
            template: t,
        } in &l.templates
        {
            println!(
                "  {channel:<12}  {}  {:<6}  {}  [{}]",
                t.template_id,
                t.source.as_str(),
                if t.title.is_empty() { "–" } else { &t.title },
                t.placeholders.join(", ")
            );
        }
        for Listed {
            channel,
            template: t,
        } in &l.subscribe_templates
        {
            println!(
                "  {channel:<12}  {}  {:<9}  {}  [{}]",
                t.template_id,
                if t.long_term { "long-term" } else { "one-time" },
                if t.title.is_empty() { "–" } else { &t.title },
                t.placeholders.join(", ")
            );
        }
        for t in l.removed.iter().map(|r| &r.template) {
            let at = t
                .removed_at
                .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            println!(
                "  oa_template   {}  removed {at} (no longer listed by WeChat; jobs naming it are refused)  {}",
                t.template_id, t.title
            );
        }
        for t in l.subscribe_removed.iter().map(|r| &r.template) {
            let at = t
                .removed_at
                .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            println!(
                "  mp_subscribe  {}  removed {at} (no longer listed by the Mini Program)  {}",
                t.template_id, t.title
            );
        }
    }
}
