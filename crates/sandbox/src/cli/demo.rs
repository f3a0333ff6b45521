//! `wxnotify-sandbox demo`: the whole system against the built-in fake WeChat.

use std::process::ExitCode;

use crate::demo::DemoOptions;

/// Arguments of `wxnotify-sandbox demo`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Needs PostgreSQL and RabbitMQ (DATABASE_URL, AMQP_URL; defaults: the local services).\nMakes a database and queues of its own and removes them at the end.\n\nExamples:\n  cargo run --release -p wxnotify-sandbox -- demo\n  cargo run --release -p wxnotify-sandbox -- demo --jobs 20000 --latency-ms 20 --json"
)]
pub struct DemoArgs {
    /// How many jobs to publish (1% more are published twice, as duplicates).
    #[arg(long, default_value_t = 5000)]
    pub jobs: u64,
    /// How many people the fake WeChat knows.
    #[arg(long, default_value_t = 2000)]
    pub people: u64,
    /// Template sends per second allowed for the demo app.
    #[arg(long, default_value_t = 3000)]
    pub rate: u32,
    /// Latency the fake WeChat adds to every call, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub latency_ms: u64,
    /// Followers who get the demo's campaign (on the bulk lane, beside the jobs); 0: none.
    #[arg(long, default_value_t = 300)]
    pub campaign: u64,
    /// Print the summary as JSON on stdout (no progress bars).
    #[arg(long)]
    pub json: bool,
}

impl From<DemoArgs> for DemoOptions {
    fn from(a: DemoArgs) -> Self {
        DemoOptions {
            jobs: a.jobs,
            people: a.people,
            rate: a.rate,
            latency_ms: a.latency_ms,
            campaign: a.campaign,
            json: a.json,
        }
    }
}

/// Runs `wxnotify-sandbox demo`: exit 1 when the books do not match.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    Ok(if crate::demo::run(args.into()).await? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(wxnotify_app::process::EXIT_FAILURE)
    })
}
