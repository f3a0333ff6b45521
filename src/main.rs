//! The `wxnotify` binary: parse the command line, set up telemetry, dispatch.

use clap::Parser;

/// mimalloc rather than glibc's malloc: a job's many small short-lived allocations (requests,
/// frames, rows) cost the worker about a tenth less CPU (docs/benchmarks.md). Without
/// transparent huge pages (`no_thp`), which would round its arenas up to 2 MiB pages and raise
/// the worker's resident set by ~15 MiB.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = wxnotify::commands::Cli::parse();
    wxnotify_core::telemetry::init(wxnotify_core::telemetry::LogFormat::from_env(), "info");
    let runtime = match cli.runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli.run())
}
