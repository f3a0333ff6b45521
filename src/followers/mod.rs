//! The OA follower sync: `wxnotify sync-followers`.
//!
//! Every follower openid comes from `user/get` (10,000 a page), their unionid from
//! `user/info/batchget` (100 a call); both land in `oa_followers`. The mapping
//! mini-program openid → unionid → OA openid needs the unionid, so followers without one (the OA
//! is not bound to an Open Platform account) are kept and counted but cannot be joined.
//!
//! - [`sync`]: the pass (fetch, store, resume, mark the absent unsubscribed); `fetch`: its
//!   WeChat half (user/get, batchget, retries, rate limit); [`report`]: what a run reports;
//! - [`store`]: its SQL, and the follower changes callback events make;
//! - [`progress`]: the terminal progress bar;
//! - the seed method (one `user/info` per follower), for the benchmark's comparison, is in
//!   `sandbox::bench::followers`.

mod fetch;
pub mod progress;
pub mod report;
pub mod store;
pub mod sync;

use std::num::NonZeroU32;
use std::process::ExitCode;

pub use progress::Progress;
pub use report::{SyncError, SyncReport};
pub use sync::{SyncOptions, sync_followers};

use crate::cli::EXIT_OK;
use crate::config::Settings;
use crate::domain::AppName;
use crate::wechat::client::ClientOptions;
use crate::wechat::{TokenStore, WechatClient};

/// Arguments of `wxnotify sync-followers`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify sync-followers\n  wxnotify sync-followers --app shop --json\n  wxnotify sync-followers --max-pages 10     # spread user/get's daily quota; the next run resumes\n  wxnotify sync-followers --restart         # abandon an interrupted pass"
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
    /// Benchmark only: also time the seed method (one user/info call per follower) on this many
    /// followers, into a scratch table, and extrapolate.
    #[arg(long, hide = true)]
    pub bench_per_user_sample: Option<usize>,
}

/// Runs `wxnotify sync-followers`.
pub async fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let apps: Vec<AppName> = match &args.app {
        Some(app) => vec![settings.app(app)?.name.clone()],
        None => settings.apps.iter().map(|a| a.name.clone()).collect(),
    };
    let pool = crate::db::connect(&settings.database_url, 4).await?;
    crate::db::register_apps(&pool, &settings.apps).await?;
    let client = WechatClient::new(settings.wechat_api_base.clone(), &ClientOptions::default())?;
    let tokens = TokenStore::new(pool.clone(), client.clone(), &settings.apps);
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
                code = code.max(err.exit_code());
            }
        }
        if let Some(sample) = args.bench_per_user_sample {
            let seed =
                crate::sandbox::bench::followers::per_user(&pool, &client, &tokens, app, sample)
                    .await?;
            println!("{}", serde_json::to_string(&seed)?);
        }
    }
    Ok(ExitCode::from(code))
}
