//! `wxnotify-sandbox demo`: the whole system against the built-in fake WeChat, run through once
//! (the default) or left running for a person to use (`--serve`).

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::demo::DemoOptions;
use crate::demo::serve::ServeOptions;

/// Arguments of `wxnotify-sandbox demo`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Needs PostgreSQL and RabbitMQ (DATABASE_URL, AMQP_URL; defaults: the local services).\nMakes a database and queues of its own and removes them at the end (with --serve: at Ctrl-C).\n\nExamples:\n  cargo run --release -p wxnotify-sandbox -- demo\n  cargo run --release -p wxnotify-sandbox -- demo --jobs 20000 --latency-ms 20 --json\n  cargo run -p wxnotify-sandbox -- demo --serve              # then follow docs/getting-started.md\n  cargo run -p wxnotify-sandbox -- demo --serve --listen 127.0.0.1:9090"
)]
pub struct DemoArgs {
    /// Leave the whole system running (the fake WeChat with named people and templates, a
    /// worker, `serve` with the console) and print an API key, an admin token and `curl` lines;
    /// Ctrl-C stops it and removes what it made.
    #[arg(long)]
    pub serve: bool,
    /// With --serve: where `serve` (the API and the console) listens.
    #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
    pub listen: SocketAddr,
    /// With --serve: where the fake WeChat listens.
    #[arg(long, default_value = "127.0.0.1:8088", requires = "serve")]
    pub wechat_listen: SocketAddr,
    /// How many jobs to publish (1% more are published twice, as duplicates).
    #[arg(long, default_value_t = 5000, conflicts_with = "serve")]
    pub jobs: u64,
    /// How many people the fake WeChat knows [default: 2000; with --serve: 50, five of them
    /// named].
    #[arg(long)]
    pub people: Option<u64>,
    /// Template sends per second allowed for the demo app [default: 3000; with --serve: 20].
    #[arg(long)]
    pub rate: Option<u32>,
    /// Latency the fake WeChat adds to every call, in milliseconds.
    #[arg(long, default_value_t = 5, conflicts_with = "serve")]
    pub latency_ms: u64,
    /// Followers who get the demo's campaign (on the bulk lane, beside the jobs); 0: none.
    #[arg(long, default_value_t = 300, conflicts_with = "serve")]
    pub campaign: u64,
    /// Print the summary as JSON on stdout (no progress bars).
    #[arg(long, conflicts_with = "serve")]
    pub json: bool,
}

impl From<DemoArgs> for DemoOptions {
    fn from(a: DemoArgs) -> Self {
        DemoOptions {
            jobs: a.jobs,
            people: a.people.unwrap_or(2000),
            rate: a.rate.unwrap_or(3000),
            latency_ms: a.latency_ms,
            campaign: a.campaign,
            json: a.json,
        }
    }
}

impl From<&DemoArgs> for ServeOptions {
    fn from(a: &DemoArgs) -> Self {
        let people = a.people.unwrap_or(50);
        ServeOptions {
            listen: a.listen,
            mock_listen: a.wechat_listen,
            followers: people.saturating_sub(crate::demo::serve::PEOPLE.len() as u64),
            rate: a.rate.unwrap_or(20),
        }
    }
}

/// Runs `wxnotify-sandbox demo`: exit 1 when the books do not match; with `--serve`, until
/// Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.serve {
        crate::demo::serve::run((&args).into()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    Ok(if crate::demo::run(args.into()).await? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(wxnotify_app::process::EXIT_FAILURE)
    })
}
