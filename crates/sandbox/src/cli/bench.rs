//! `wxnotify-sandbox bench`: end-to-end figures of the delivery pipeline on this machine.

use std::process::ExitCode;

use crate::bench::crash::CrashArgs;
use crate::bench::{BenchOptions, Scenario};

/// Arguments of `wxnotify-sandbox bench`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  cargo build --release && target/release/wxnotify-sandbox bench\n  target/release/wxnotify-sandbox bench --scenario throughput --runs 5\n  target/release/wxnotify-sandbox bench --scenario rate --json\n  target/release/wxnotify-sandbox bench --scenario backlog --backlog 1000000\n  target/release/wxnotify-sandbox bench --scenario faults --runs 3\n  target/release/wxnotify-sandbox bench --scenario api\n  target/release/wxnotify-sandbox bench --scenario campaign --recipients 1000000 --send-seconds 60\n  target/release/wxnotify-sandbox bench --scenario shared-rate --runs 3\n  target/release/wxnotify-sandbox bench --scenario crash --json\n  target/release/wxnotify-sandbox bench --scenario throughput --mix --runs 3\n  target/release/wxnotify-sandbox bench --scenario crash --mix --crash-jobs 50000\n\nRun a release build: the worker children are the `wxnotify` binary beside this one (`cargo build --release` builds both)."
)]
pub struct BenchArgs {
    /// Which scenario to run (`all` = throughput and rate).
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: Scenario,
    /// Jobs in the throughput scenario.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: u64,
    /// Jobs in the backlog scenario.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    /// Unacked jobs per lane for the worker.
    #[arg(long, default_value_t = 512)]
    pub prefetch: u16,
    /// Runs of each scenario; with more than one, a summary follows: the median of each figure,
    /// the worst busiest window and peak RSS (these machines are noisy: quote medians).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Recipients in the campaign scenario.
    #[arg(long, default_value_t = 1_000_000)]
    pub recipients: u64,
    /// Scenario `campaign`: seconds of measured sending (0: the snapshot only).
    #[arg(long, default_value_t = 60)]
    pub send_seconds: u64,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Scenario `api`: batches of 1,000 jobs to post.
    #[arg(long, default_value_t = 20)]
    pub api_batches: usize,
    /// Scenario `api`: seconds of single POSTs at 500 requests/s.
    #[arg(long, default_value_t = 10)]
    pub api_seconds: u64,
    /// Scenario `crash` (`crates/sandbox/src/bench/crash.rs`).
    #[command(flatten)]
    pub crash: CrashArgs,
    /// Scenarios `throughput` and `crash`: the mixed-channel workload, one job per person: half
    /// to OA followers, a third to non-followers holding one subscribe grant each, the rest to
    /// people with neither (`no_channel`); `throughput` alternates it with an all-OA drain.
    #[arg(long)]
    pub mix: bool,
}

impl From<BenchArgs> for BenchOptions {
    fn from(a: BenchArgs) -> Self {
        BenchOptions {
            scenario: a.scenario,
            jobs: a.jobs,
            backlog: a.backlog,
            prefetch: a.prefetch,
            runs: a.runs,
            recipients: a.recipients,
            json: a.json,
            api_batches: a.api_batches,
            api_seconds: a.api_seconds,
            send_seconds: a.send_seconds,
            crash: a.crash,
            mix: a.mix,
        }
    }
}

/// Runs `wxnotify-sandbox bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    crate::bench::run(args.into()).await
}
