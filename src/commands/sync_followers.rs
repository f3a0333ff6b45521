//! `wxnotify sync-followers`: every OA follower and their unionid into Postgres.

use std::num::NonZeroU32;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE};
use wxnotify_app::{Application, Wechat};
use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::errcode::{ErrClass, PermanentKind};
use wxnotify_services::followers::{Progress, SyncError, SyncOptions, sync_followers};

/// Arguments of `wxnotify sync-followers`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify sync-followers\n  wxnotify sync-followers --app default --json\n  wxnotify sync-followers --max-pages 10     # spread user/get's daily quota; the next run resumes\n  wxnotify sync-followers --restart         # abandon an interrupted pass"
)]
pub struct SyncArgs {
    /// The app to sync (default: every configured app, one after another).
    #[arg(long, value_name = "NAME")]
    pub app: Option<AppName>,
    /// Print the report as one JSON object per app instead of a summary line.
    #[arg(long)]
    pub json: bool,
    /// batchget calls in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// batchget calls per second at most (100 followers each).
    #[arg(long, default_value_t = NonZeroU32::new(200).expect("non-zero"))]
    pub rate: NonZeroU32,
    /// Stop after this many pages of 10,000 (e.g. to spread user/get's 500 calls a day); the
    /// next run resumes.
    #[arg(long)]
    pub max_pages: Option<u32>,
    /// Abandon an interrupted pass and start again from the first page.
    #[arg(long)]
    pub restart: bool,
}

/// Runs `wxnotify sync-followers`.
pub async fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let apps: Vec<AppName> = match &args.app {
        Some(app) => vec![settings.app(app)?.name.clone()],
        None => settings.apps.iter().map(|a| a.name.clone()).collect(),
    };
    let app = Application::connect(settings, 4).await?;
    let Wechat { client, tokens } = app.wechat()?;
    let pool = app.pool;
    let opts = SyncOptions {
        concurrency: args.concurrency,
        calls_per_second: args.rate,
        max_pages: args.max_pages,
        restart: args.restart,
        ..SyncOptions::default()
    };
    let mut code = EXIT_OK;
    for app in &apps {
        let progress = Progress::on_terminal(app.as_str());
        match sync_followers(&pool, &client, &tokens, app, &opts, &progress).await {
            Ok(report) if args.json => println!("{}", serde_json::to_string(&report)?),
            Ok(report) => println!("{}", report.summary()),
            Err(err) => {
                eprintln!("error: {app}: {err:#}");
                code = code.max(exit_code(&err));
            }
        }
    }
    Ok(ExitCode::from(code))
}

/// The exit code of `sync-followers` for a failed app: Postgres or a passing WeChat failure 3,
/// a WeChat setting 2, anything else 1.
pub fn exit_code(err: &SyncError) -> u8 {
    match err {
        SyncError::Busy(_) => EXIT_FAILURE,
        SyncError::Db(_) => EXIT_UNAVAILABLE,
        SyncError::Wechat { source, .. } => match source.class() {
            ErrClass::Transient | ErrClass::QuotaExhausted => EXIT_UNAVAILABLE,
            ErrClass::Permanent(PermanentKind::Config) | ErrClass::AccountBlocked => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        },
    }
}
