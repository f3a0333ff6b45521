//! The commands layer: the command line (clap), one module per subcommand with its `Args` and
//! its `run` (parse → call the library → print → map errors to exit codes). The library below
//! knows nothing of clap or exit codes; it returns typed errors, mapped here by
//! [`exit_code_for`].

pub mod api_key;
pub mod bench;
pub mod campaign;
pub mod demo;
pub mod dlq;
pub mod enqueue;
pub mod migrate;
pub mod mock_wechat;
pub mod serve;
pub mod status;
pub mod sync_followers;
pub mod templates;
pub mod webhook;
pub mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tokio_util::sync::CancellationToken;

use crate::domain::Lane;

/// Exit code for a run that worked.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure of the work itself (WeChat refused, jobs rejected …).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad configuration or arguments: fix the settings and run again.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code when a service (Postgres, RabbitMQ, WeChat) could not be reached: try again later.
pub const EXIT_UNAVAILABLE: u8 = 3;

/// wxnotify pushes WeChat Official Account template messages to Mini Program users.
///
/// Configuration comes from the environment: DATABASE_URL, AMQP_URL, WECHAT_API_BASE,
/// WXNOTIFY_OA_APPID / WXNOTIFY_OA_SECRET (and WXNOTIFY_MP_APPID / WXNOTIFY_MP_SECRET for
/// logins), WXNOTIFY_QUEUE_PREFIX, WXNOTIFY_CONFIG for several apps. Start with `wxnotify demo`.
#[derive(Debug, Parser)]
#[command(
    name = "wxnotify",
    version,
    about,
    long_about,
    after_help = "Examples:\n  wxnotify demo                       # the whole system against the fake WeChat\n  wxnotify migrate --create-database  # once per deploy (safe to repeat)\n  wxnotify worker\n  wxnotify serve --listen 0.0.0.0:8080\n  wxnotify enqueue --to-mp-openid oMP123 --template TEMPLATE_ID --data thing1=Shipped\n\nExit codes: 0 done, 1 the work failed, 2 bad configuration or arguments, 3 Postgres, RabbitMQ or WeChat unreachable (try again)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system against the built-in fake WeChat and print what happened.
    Demo(demo::DemoArgs),
    /// Apply the Postgres migrations and declare the RabbitMQ topology (safe to repeat).
    Migrate(migrate::MigrateArgs),
    /// Consume jobs and send them as template messages until SIGTERM / Ctrl-C.
    Worker(worker::WorkerArgs),
    /// Publish one job (from flags or JSON) or a file of jobs (NDJSON), with publisher confirms.
    Enqueue(Box<enqueue::EnqueueArgs>),
    /// Inspect, replay and purge dead letters.
    Dlq(dlq::DlqArgs),
    /// Bulk campaigns: create, preview, start, pause, resume, cancel, status, list, dispatch.
    Campaign(campaign::CampaignArgs),
    /// Pull every OA follower and their unionid into Postgres.
    SyncFollowers(sync_followers::SyncArgs),
    /// Serve the HTTP API: Mini Program login, the OA callback, the producer API, health and metrics.
    Serve(serve::ServeArgs),
    /// Run the fake WeChat API server (development, tests, demo, benchmarks).
    MockWechat(mock_wechat::MockArgs),
    /// Print the JSON Schema of a job (the contract for producers in any language).
    #[command(
        after_help = "Examples:\n  wxnotify schema > job.schema.json\n  wxnotify schema | jq '.properties | keys'"
    )]
    Schema,
    /// The OA's template catalog: sync it from WeChat, list it.
    Templates(templates::TemplatesArgs),
    /// Apps (paused, today's quota), queue depths and live workers.
    Status(status::StatusArgs),
    /// Measure the delivery pipeline end to end on this machine (see README "Figures").
    Bench(bench::BenchArgs),
    /// Producer API keys per app: create (shown once), list, revoke.
    ApiKey(api_key::ApiKeyArgs),
    /// Signed outcome webhooks per app: set, list, remove.
    Webhook(webhook::WebhookArgs),
}

impl Cli {
    /// The log filter used when RUST_LOG is not set.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            // The demo's dead letters are the point of the demo, not warnings: it summarises them.
            Command::Demo(_) => "error",
            Command::Bench(_) => "warn",
            _ => "info",
        }
    }

    /// The tokio runtime the command runs on: the worker's has `--threads` threads (one thread
    /// is a current-thread runtime), every other command a multi-thread runtime.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        match &self.command {
            Command::Worker(args) if args.threads.get() == 1 => {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            Command::Worker(args) => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads.get())
                .enable_all()
                .build(),
            _ => tokio::runtime::Runtime::new(),
        }
    }

    /// Runs the command; the exit code says how it went.
    pub async fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::Enqueue(args) => enqueue::run(*args).await,
            Command::SyncFollowers(args) => sync_followers::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::MockWechat(args) => mock_wechat::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Dlq(args) => dlq::run(args).await,
            Command::Templates(args) => templates::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::ApiKey(args) => api_key::run(args).await,
            Command::Webhook(args) => webhook::run(args).await,
            Command::Campaign(args) => campaign::run(args).await,
            Command::Schema => {
                print!("{}", crate::domain::job::schema_json());
                Ok(ExitCode::SUCCESS)
            }
        };
        match result {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(exit_code_for(&err))
            }
        }
    }
}

/// Maps an error to an exit code by what caused it: a setting to fix is 2, a service that
/// could not be reached is 3, anything else 1.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    let misconfigured = err.chain().any(|e| {
        e.is::<crate::config::ConfigError>()
            || matches!(
                e.downcast_ref::<crate::queue::ConnectError>(),
                Some(crate::queue::ConnectError::Url(_))
            )
    });
    if misconfigured {
        EXIT_CONFIG
    } else if err.chain().any(|e| {
        e.is::<sqlx::Error>()
            || e.is::<lapin::Error>()
            || e.is::<std::io::Error>()
            || e.is::<crate::queue::ConnectError>()
    }) {
        EXIT_UNAVAILABLE
    } else {
        EXIT_FAILURE
    }
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot listen for SIGTERM");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    token.cancel();
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let token = CancellationToken::new();
    cancel_on_signal(token.clone()).await;
}

/// The value parser of a `--lane` flag: `jobs` or `bulk` (the domain's [`Lane`]).
pub(crate) fn lane_parser() -> impl clap::builder::TypedValueParser<Value = Lane> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("jobs")
            .help("Transactional notifications (an order shipped): consumed first"),
        PossibleValue::new("bulk").help("Campaign / bulk sends: whatever rate is left"),
    ])
    .map(|s| Lane::from_routing_key(&s).expect("one of the possible values"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::runtime::RuntimeFlavor;

    use super::Cli;

    fn flavor(args: &[&str]) -> RuntimeFlavor {
        let cli = Cli::try_parse_from(args).expect("valid arguments");
        cli.runtime().expect("a runtime").handle().runtime_flavor()
    }

    #[test]
    fn the_worker_runs_on_one_thread_unless_told_otherwise() {
        assert_eq!(
            flavor(&["wxnotify", "worker"]),
            RuntimeFlavor::CurrentThread
        );
        assert_eq!(
            flavor(&["wxnotify", "worker", "--threads", "4"]),
            RuntimeFlavor::MultiThread
        );
        assert_eq!(flavor(&["wxnotify", "demo"]), RuntimeFlavor::MultiThread);
        assert!(Cli::try_parse_from(["wxnotify", "worker", "--threads", "0"]).is_err());
    }
}
