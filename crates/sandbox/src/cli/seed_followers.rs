//! `wxnotify-sandbox seed-followers`: times the seed method of the follower sync (one
//! `user/info` call per follower) on a sample, for `bench/sync-followers.sh`.

use std::process::ExitCode;

use wxnotify_app::Application;
use wxnotify_core::config::Settings;
use wxnotify_core::domain::AppName;
use wxnotify_core::wechat::Wechat;

/// Arguments of `wxnotify-sandbox seed-followers`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify-sandbox seed-followers --sample 2000\n  wxnotify-sandbox seed-followers --app default --sample 500"
)]
pub struct SeedArgs {
    /// The app whose followers to time (default: the first configured app).
    #[arg(long, value_name = "NAME")]
    pub app: Option<AppName>,
    /// Followers to time; the report extrapolates to WeChat's follower count.
    #[arg(long, default_value_t = 1000)]
    pub sample: usize,
}

/// Runs `wxnotify-sandbox seed-followers`: prints the timing as one JSON object.
pub async fn run(args: SeedArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    let app_name = match &args.app {
        Some(app) => settings.app(app)?.name.clone(),
        None => settings.apps[0].name.clone(),
    };
    let app = Application::connect(settings, 4).await?;
    let Wechat { client, tokens } = app.wechat()?;
    let report =
        crate::bench::followers::per_user(&app.pool, &client, &tokens, &app_name, args.sample)
            .await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}
