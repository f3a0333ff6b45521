//! The `wxnotify` binary: parse the command line, set up telemetry, dispatch.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = wxnotify::cli::Cli::parse();
    wxnotify::telemetry::init(
        wxnotify::telemetry::LogFormat::from_env(),
        cli.default_log_filter(),
    );
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    runtime.block_on(cli.run())
}
