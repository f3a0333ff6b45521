//! `wxnotify campaign create|preview|start|pause|resume|cancel|status|list|dispatch`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{EXIT_CONFIG, EXIT_FAILURE, EXIT_UNAVAILABLE};
use crate::campaigns::model::Action;
use crate::campaigns::store::{self, AudienceSource, NewCampaign};
use crate::campaigns::{CampaignError, audience, pacing_from, preview, progress};
use crate::config::Settings;
use crate::domain::{AppId, AppName, MiniProgramLink, TemplateData, TemplateId};

/// Arguments of `wxnotify campaign`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wxnotify campaign create --app shop --template-id T --data '{\"thing1\":\"Sale\"}' --followers --json\n  wxnotify campaign create --app shop --template-id T --data '{\"thing1\":\"Sale\"}' --recipients people.csv --window 09:00-21:00 --time-zone Asia/Shanghai\n  wxnotify campaign start 0193…\n  wxnotify campaign status 0193…\n  wxnotify campaign list --json\n\nThe dispatcher runs inside `wxnotify worker` (or alone: `wxnotify campaign dispatch`)."
)]
pub struct CampaignArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CampaignCommand,
}

/// The campaign subcommands.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign (draft) and snapshot its audience.
    #[command(after_help = "Examples:
  wxnotify campaign create --template-id T --data '{\"thing1\":\"Sale\",\"time2\":\"12-12\"}' --followers
  wxnotify campaign create --app shop --template-id T --data '{\"thing1\":\"Shipped\"}' \\
      --recipients orders.csv --rate 200 --window 09:00-21:00 --time-zone Asia/Shanghai --daily-cap 100000 --json

A recipients file is NDJSON ({\"mp_openid\":\"o…\",\"data\":{\"order\":\"42\"}} a line; or unionid / oa_openid)
or CSV with a header naming one of mp_openid, unionid, oa_openid; its other columns are template
fields of that recipient. Bad lines are reported with their line numbers and skipped.")]
    Create(Box<CreateArgs>),
    /// Show the snapshot: reachable and unreachable recipients by reason.
    #[command(after_help = "Example:\n  wxnotify campaign preview 0193… --json")]
    Preview(IdArgs),
    /// Start a draft campaign (it waits for its start time and window).
    #[command(after_help = "Example:\n  wxnotify campaign start 0193…")]
    Start(IdArgs),
    /// Pause a campaign: no new sends within about a second; jobs already queued wait.
    #[command(after_help = "Example:\n  wxnotify campaign pause 0193…")]
    Pause(IdArgs),
    /// Resume a paused campaign where it stopped.
    #[command(after_help = "Example:\n  wxnotify campaign resume 0193…")]
    Resume(IdArgs),
    /// Cancel a campaign for good: queued jobs are recorded `cancelled`, not sent.
    #[command(after_help = "Example:\n  wxnotify campaign cancel 0193…")]
    Cancel(IdArgs),
    /// Progress from the ledger; on a terminal a live progress bar until the campaign ends.
    #[command(
        after_help = "Examples:\n  wxnotify campaign status 0193…\n  wxnotify campaign status 0193… --json\n  wxnotify campaign status 0193… --once"
    )]
    Status(StatusArgs),
    /// The newest campaigns.
    #[command(after_help = "Example:\n  wxnotify campaign list --json")]
    List(ListArgs),
    /// Run only the campaign dispatcher (`wxnotify worker` runs one too) until SIGTERM.
    #[command(after_help = "Example:\n  wxnotify campaign dispatch")]
    Dispatch,
}

/// `campaign create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The app (default: the default app).
    #[arg(long)]
    pub app: Option<String>,
    /// The OA template id.
    #[arg(long)]
    pub template_id: String,
    /// Template fields shared by every recipient, as a JSON object.
    #[arg(long)]
    pub data: String,
    /// Web page opened on tap.
    #[arg(long)]
    pub url: Option<url::Url>,
    /// Mini Program opened on tap (with --pagepath).
    #[arg(long, requires = "pagepath")]
    pub miniprogram_appid: Option<String>,
    /// The Mini Program page (with --miniprogram-appid).
    #[arg(long, requires = "miniprogram_appid")]
    pub pagepath: Option<String>,
    /// Every subscribed follower of the app's OA.
    #[arg(
        long,
        conflicts_with = "recipients",
        required_unless_present = "recipients"
    )]
    pub followers: bool,
    /// A recipients file, `.ndjson` or `.csv`.
    #[arg(long)]
    pub recipients: Option<PathBuf>,
    /// Sends per second at most (default and ceiling: the app's rate).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Daily send window, local time `HH:MM-HH:MM`.
    #[arg(long)]
    pub window: Option<String>,
    /// Time zone of the window and the daily cap (IANA name).
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Not before this instant (RFC 3339).
    #[arg(long)]
    pub start_at: Option<DateTime<Utc>>,
    /// At most this many dispatched a day.
    #[arg(long)]
    pub daily_cap: Option<u64>,
    /// Not sent after this instant (RFC 3339).
    #[arg(long)]
    pub not_after: Option<DateTime<Utc>>,
    /// Who creates it (recorded in its history; default $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of commands on one campaign.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The campaign id.
    pub id: Uuid,
    /// Who does it (recorded in the history; default $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `campaign status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The campaign id.
    pub id: Uuid,
    /// Print JSON (once).
    #[arg(long)]
    pub json: bool,
    /// Print one line and exit, also on a terminal.
    #[arg(long)]
    pub once: bool,
}

/// `campaign list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// How many (newest first).
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn actor(by: &Option<String>) -> String {
    by.clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

/// Builds a new campaign from flags (shared by the HTTP API through [`pacing_from`]).
fn new_campaign(
    args: &CreateArgs,
    settings: &Settings,
) -> Result<(NewCampaign, u32), CampaignError> {
    let app = match &args.app {
        Some(a) => AppName::parse(a.clone()).map_err(|e| CampaignError::Invalid(e.to_string()))?,
        None => settings
            .apps
            .first()
            .map(|a| a.name.clone())
            .ok_or_else(|| CampaignError::Invalid("no app is configured".into()))?,
    };
    let app_rate = settings
        .app(&app)
        .map_err(|e| CampaignError::Invalid(e.to_string()))?
        .rate_per_second;
    let data: TemplateData = serde_json::from_str(&args.data)
        .map_err(|e| CampaignError::Invalid(format!("--data: {e}")))?;
    let miniprogram = match (&args.miniprogram_appid, &args.pagepath) {
        (Some(appid), Some(pagepath)) => Some(MiniProgramLink {
            appid: AppId::parse(appid.clone())
                .map_err(|e| CampaignError::Invalid(format!("--miniprogram-appid: {e}")))?,
            pagepath: pagepath.clone(),
        }),
        _ => None,
    };
    let pacing = pacing_from(
        args.rate.unwrap_or(app_rate),
        args.window.as_deref(),
        &args.time_zone,
        args.start_at,
        args.daily_cap,
    )?;
    Ok((
        NewCampaign {
            app,
            template_id: TemplateId::parse(args.template_id.clone())
                .map_err(|e| CampaignError::Invalid(format!("--template-id: {e}")))?,
            data,
            url: args.url.clone(),
            miniprogram,
            not_after: args.not_after,
            pacing,
            created_by: actor(&args.by),
        },
        app_rate,
    ))
}

/// Runs `wxnotify campaign …`.
pub async fn run(args: CampaignArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let pool = crate::db::connect(&settings.database_url, 4).await?;
    crate::db::migrate(&pool).await?;
    crate::db::register_apps(&pool, &settings.apps).await?;
    if let CampaignCommand::Dispatch = args.command {
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(super::cancel_on_signal(shutdown.clone()));
        crate::campaigns::dispatcher::run_until(settings, pool, Default::default(), shutdown).await;
        return Ok(ExitCode::SUCCESS);
    }
    match command(args.command, &settings, &pool).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(match e {
                CampaignError::Invalid(_) | CampaignError::Io(_) => EXIT_CONFIG,
                CampaignError::Db(_) => EXIT_UNAVAILABLE,
                CampaignError::NotFound(_) | CampaignError::Transition { .. } => EXIT_FAILURE,
            }))
        }
    }
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(value).expect("serialisable output")
        );
    } else {
        println!("{}", text());
    }
}

async fn command(
    command: CampaignCommand,
    settings: &Settings,
    pool: &PgPool,
) -> Result<ExitCode, CampaignError> {
    match command {
        CampaignCommand::Create(args) => {
            let (new, app_rate) = new_campaign(&args, settings)?;
            let source = match &args.recipients {
                Some(path) => AudienceSource::File(audience::read_file(path)?),
                None => AudienceSource::Followers,
            };
            let report = store::create(pool, &new, app_rate, source).await?;
            print(args.json, &report, || {
                let mut s = preview_text(
                    report.id,
                    report.audience,
                    report.reachable,
                    &report.unreachable,
                );
                if report.repeats > 0 {
                    s.push_str(&format!(
                        "\n  {} repeated recipients kept once",
                        report.repeats
                    ));
                }
                if report.bad_lines.count > 0 {
                    s.push_str(&format!(
                        "\n  {} bad lines skipped:",
                        report.bad_lines.count
                    ));
                    for b in &report.bad_lines.first {
                        s.push_str(&format!("\n    line {}: {}", b.line, b.error));
                    }
                }
                s.push_str(&format!(
                    "\nstart it with: wxnotify campaign start {}",
                    report.id
                ));
                s
            });
            Ok(ExitCode::SUCCESS)
        }
        CampaignCommand::Preview(args) => {
            let p = preview(pool, args.id).await?;
            print(args.json, &p, || {
                let mut s = preview_text(p.id, p.audience, p.reachable, &p.unreachable);
                s.push('\n');
                s.push_str(&p.template.text());
                s
            });
            Ok(ExitCode::SUCCESS)
        }
        CampaignCommand::Start(a) => act(pool, a, Action::Start).await,
        CampaignCommand::Pause(a) => act(pool, a, Action::Pause).await,
        CampaignCommand::Resume(a) => act(pool, a, Action::Resume).await,
        CampaignCommand::Cancel(a) => act(pool, a, Action::Cancel).await,
        CampaignCommand::Status(args) => {
            if args.json || args.once || !std::io::stdout().is_terminal() {
                let s = progress::status(pool, args.id).await?;
                print(args.json, &s, || s.line());
            } else {
                follow(pool, args.id).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        CampaignCommand::List(args) => {
            let list = store::list(pool, args.limit).await?;
            print(args.json, &list, || {
                let mut s = String::from(
                    "id                                    state      app       audience  reachable  dispatched  created",
                );
                for c in &list {
                    s.push_str(&format!(
                        "\n{}  {:<9}  {:<8}  {:>8}  {:>9}  {:>10}  {}",
                        c.id,
                        c.state.as_str(),
                        c.app,
                        c.audience,
                        c.reachable,
                        c.dispatched,
                        c.created_at.format("%Y-%m-%d %H:%M")
                    ));
                }
                s
            });
            Ok(ExitCode::SUCCESS)
        }
        CampaignCommand::Dispatch => unreachable!("handled before"),
    }
}

fn preview_text<K: std::fmt::Display>(
    id: Uuid,
    audience: u64,
    reachable: u64,
    unreachable: &std::collections::BTreeMap<K, u64>,
) -> String {
    let reasons: Vec<String> = unreachable
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    format!(
        "campaign {id}: {audience} recipients, {reachable} reachable, {} unreachable{}",
        audience - reachable,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    )
}

async fn act(pool: &PgPool, args: IdArgs, action: Action) -> Result<ExitCode, CampaignError> {
    let state = store::apply(pool, args.id, action, &actor(&args.by)).await?;
    #[derive(Serialize)]
    struct Out {
        id: Uuid,
        state: crate::campaigns::CampaignState,
    }
    print(args.json, &Out { id: args.id, state }, || {
        format!("campaign {} is {state}", args.id)
    });
    Ok(ExitCode::SUCCESS)
}

/// A live progress bar until the campaign ends (or Ctrl-C), then its status line.
async fn follow(pool: &PgPool, id: Uuid) -> Result<(), CampaignError> {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} finished  {msg}",
        )
        .expect("the progress template is valid"),
    );
    bar.set_prefix(format!("campaign {}", &id.to_string()[..8]));
    let mut every = tokio::time::interval(Duration::from_millis(500));
    let last = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break progress::status(pool, id).await?,
            _ = every.tick() => {}
        }
        let s = progress::status(pool, id).await?;
        bar.set_length(s.reachable);
        bar.set_position(s.finished());
        bar.set_message(format!(
            "{} | {} sent, {} dead, {:.0}/s{}",
            s.state,
            s.sent,
            s.dead.values().sum::<u64>(),
            s.send_rate,
            s.eta_s.map(|e| format!(", ETA {e} s")).unwrap_or_default()
        ));
        if s.state.is_final() {
            break s;
        }
    };
    bar.finish_and_clear();
    println!("{}", last.line());
    Ok(())
}
