//! The commands layer: the command line (clap), one module per subcommand with its `Args` and
//! its `run` (parse → call the library → print → map errors to exit codes). The library below
//! knows nothing of clap or exit codes; it returns typed errors, mapped here by
//! [`exit_code_for`].

pub mod admin_user;
pub mod api_key;
pub mod campaign;
pub mod completion;
pub mod dlq;
pub mod enqueue;
pub mod health;
pub mod migrate;
pub mod serve;
pub mod status;
pub mod sync_followers;
pub mod templates;
pub mod webhook;
pub mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wxnotify_core::domain::Lane;

pub use wxnotify_app::process::{
    EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, cancel_on_signal, exit_code_for,
    shutdown_signal,
};

/// wxnotify pushes WeChat Official Account template messages to Mini Program users.
///
/// Configuration comes from the environment: DATABASE_URL, AMQP_URL, WECHAT_API_BASE,
/// WXNOTIFY_OA_APPID / WXNOTIFY_OA_SECRET (and WXNOTIFY_MP_APPID / WXNOTIFY_MP_SECRET for
/// logins), WXNOTIFY_QUEUE_PREFIX, WXNOTIFY_CONFIG for several apps. Try the whole system first with
/// `wxnotify-sandbox demo` (the fake WeChat, the demo and the benchmarks are in that binary).
#[derive(Debug, Parser)]
#[command(
    name = "wxnotify",
    version,
    about,
    long_about,
    after_help = "Examples:\n  wxnotify migrate --create-database  # once per deploy (safe to repeat)\n  wxnotify worker\n  wxnotify serve --listen 0.0.0.0:8080\n  wxnotify enqueue --to-mp-openid oMP123 --template TEMPLATE_ID --data thing1=Shipped\n\nExit codes: 0 done, 1 the work failed, 2 bad configuration or arguments, 3 Postgres, RabbitMQ or WeChat unreachable (try again)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Print the JSON Schema of a job (the contract for producers in any language).
    #[command(
        after_help = "Examples:\n  wxnotify schema > job.schema.json\n  wxnotify schema | jq '.properties | keys'"
    )]
    Schema,
    /// The OA's template catalog: sync it from WeChat, list it.
    Templates(templates::TemplatesArgs),
    /// Apps (paused, today's quota), queue depths and live workers.
    Status(status::StatusArgs),
    /// Producer API keys per app: create (shown once), list, revoke.
    ApiKey(api_key::ApiKeyArgs),
    /// Signed outcome webhooks per app: set, list, remove.
    Webhook(webhook::WebhookArgs),
    /// Named admins of the admin API and console: add (token shown once), list, disable, rotate.
    AdminUser(admin_user::AdminUserArgs),
    /// Ask a running process's health endpoint (`/livez`, `/readyz`): the image's health check.
    Health(health::HealthArgs),
    /// Print the shell completion script (bash, zsh or fish).
    Completion(completion::CompletionArgs),
}

impl Cli {
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
            Command::Migrate(args) => migrate::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::Enqueue(args) => enqueue::run(*args).await,
            Command::SyncFollowers(args) => sync_followers::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Dlq(args) => dlq::run(args).await,
            Command::Templates(args) => templates::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::ApiKey(args) => api_key::run(args).await,
            Command::Webhook(args) => webhook::run(args).await,
            Command::AdminUser(args) => admin_user::run(args).await,
            Command::Campaign(args) => campaign::run(args).await,
            Command::Health(args) => health::run(args).await,
            Command::Completion(args) => completion::run(args),
            Command::Schema => {
                print!("{}", wxnotify_core::domain::job::schema_json());
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
        assert_eq!(flavor(&["wxnotify", "status"]), RuntimeFlavor::MultiThread);
        assert!(Cli::try_parse_from(["wxnotify", "worker", "--threads", "0"]).is_err());
    }
}
