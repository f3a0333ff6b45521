//! The `wxnotify-sandbox` binary: the demo, the benchmarks and the fake WeChat.

use clap::Parser;

/// The same allocator as the service's binary, so the benchmarks measure what ships.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = wxnotify_sandbox::cli::Cli::parse();
    wxnotify_core::telemetry::init(
        wxnotify_core::telemetry::LogFormat::from_env(),
        cli.default_log_filter(),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli.run())
}
