//! The command line of `wxnotify-sandbox`: the demo, the benchmarks and the fake WeChat as a
//! process. The service's own binary, `wxnotify`, carries none of them.

pub mod bench;
pub mod demo;
pub mod mock_wechat;
pub mod seed_followers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wxnotify_app::process::exit_code_for;

/// The sandbox of wxnotify: the whole system against a fake WeChat, benchmarks, and the fake
/// WeChat API server on its own.
///
/// Needs PostgreSQL and RabbitMQ (DATABASE_URL, AMQP_URL; defaults: the local services); the
/// demo and the benchmarks make a database and queues of their own and remove them at the end.
#[derive(Debug, Parser)]
#[command(
    name = "wxnotify-sandbox",
    version,
    about,
    long_about,
    after_help = "Examples:\n  wxnotify-sandbox demo                 # the whole system against the fake WeChat\n  wxnotify-sandbox bench --scenario throughput --runs 5\n  wxnotify-sandbox mock-wechat --listen 127.0.0.1:8088\n\nExit codes: 0 done, 1 the work failed (the demo's books do not match), 2 bad configuration or arguments, 3 Postgres or RabbitMQ unreachable."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system against the fake WeChat and print what happened.
    Demo(demo::DemoArgs),
    /// Measure the delivery pipeline end to end on this machine (see docs/benchmarks.md).
    Bench(Box<bench::BenchArgs>),
    /// Run the fake WeChat API server (development, tests, demo, benchmarks).
    MockWechat(mock_wechat::MockArgs),
    /// Time the follower sync's seed method (one user/info call per follower) on a sample.
    SeedFollowers(seed_followers::SeedArgs),
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

    /// Runs the command; the exit code says how it went.
    pub async fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(*args).await,
            Command::MockWechat(args) => mock_wechat::run(args).await,
            Command::SeedFollowers(args) => seed_followers::run(args).await,
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
