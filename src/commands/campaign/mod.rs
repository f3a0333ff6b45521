//! `wxnotify campaign create|preview|start|pause|resume|cancel|status|list|dispatch`.

use std::io::IsTerminal;
use std::process::ExitCode;
use wxnotify_app::Application;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

mod args;
mod output;

pub use self::args::{CampaignArgs, CampaignCommand, CreateArgs, IdArgs, ListArgs, StatusArgs};
use self::output::{follow, preview_text, print};
use super::{EXIT_CONFIG, EXIT_FAILURE, EXIT_UNAVAILABLE};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::{
    AppId, AppName, MiniProgramLink, MpSubscribe, TemplateData, TemplateId,
};
use wxnotify_services::campaigns::model::Action;
use wxnotify_services::campaigns::store::{self, AudienceSource, NewCampaign};
use wxnotify_services::campaigns::{
    CampaignError, audience, label, pacing_from, preview, progress,
};

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
    let mp_subscribe = mp_subscribe_of(args)?;
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
            name: args.name.clone(),
            truncate: args.truncate,
            mp_subscribe,
        },
        app_rate,
    ))
}

/// The subscribe message of the `--mp-subscribe-*` flags, read as the job's `mp_subscribe`.
fn mp_subscribe_of(args: &CreateArgs) -> Result<Option<MpSubscribe>, CampaignError> {
    let (Some(template_id), Some(data)) = (&args.mp_subscribe_template_id, &args.mp_subscribe_data)
    else {
        return Ok(None);
    };
    let data: serde_json::Value = serde_json::from_str(data)
        .map_err(|e| CampaignError::Invalid(format!("--mp-subscribe-data: {e}")))?;
    let mut form = serde_json::json!({"template_id": template_id, "data": data});
    if let Some(page) = &args.mp_subscribe_page {
        form["page"] = page.clone().into();
    }
    if let Some(state) = &args.mp_subscribe_miniprogram_state {
        form["miniprogram_state"] = state.clone().into();
    }
    serde_json::from_value(form).map(Some).map_err(|e| {
        CampaignError::Invalid(format!(
            "--mp-subscribe-*: {e} (--mp-subscribe-miniprogram-state is developer, trial or formal)"
        ))
    })
}

/// Runs `wxnotify campaign …`.
pub async fn run(args: CampaignArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let pool = Application::connect_migrated(settings.clone(), 4)
        .await?
        .pool;
    if let CampaignCommand::Dispatch = args.command {
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(super::cancel_on_signal(shutdown.clone()));
        wxnotify_services::campaigns::dispatcher::run_until(
            settings,
            pool,
            Default::default(),
            shutdown,
        )
        .await;
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
                    &label(report.id, report.name.as_deref()),
                    report.audience,
                    report.reachable,
                    &report.unreachable,
                    &report.by_channel,
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
                let mut s = preview_text(
                    &label(p.id, p.name.as_deref()),
                    p.audience,
                    p.reachable,
                    &p.unreachable,
                    &p.by_channel,
                );
                s.push('\n');
                s.push_str(&p.template.text_with_rows(&p.bad_rows));
                if let Some(sub) = &p.mp_subscribe_template {
                    s.push_str("\n  subscribe message:\n");
                    s.push_str(&sub.text().replace("\n", "\n  "));
                }
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
                    "id                                    name                  state      app       audience  reachable  dispatched  created",
                );
                for c in &list {
                    s.push_str(&format!(
                        "\n{}  {:<20}  {:<9}  {:<8}  {:>8}  {:>9}  {:>10}  {}",
                        c.id,
                        name_cell(c.name.as_deref()),
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

/// A name in a list's column: at most 20 characters, `–` for none.
fn name_cell(name: Option<&str>) -> String {
    match name {
        None => "–".into(),
        Some(n) if n.chars().count() > 20 => {
            let mut s: String = n.chars().take(19).collect();
            s.push('…');
            s
        }
        Some(n) => n.to_owned(),
    }
}

async fn act(pool: &PgPool, args: IdArgs, action: Action) -> Result<ExitCode, CampaignError> {
    let state = store::apply(pool, args.id, action, &actor(&args.by)).await?;
    #[derive(Serialize)]
    struct Out {
        id: Uuid,
        state: wxnotify_services::campaigns::CampaignState,
    }
    print(args.json, &Out { id: args.id, state }, || {
        format!("campaign {} is {state}", args.id)
    });
    Ok(ExitCode::SUCCESS)
}
