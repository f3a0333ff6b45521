//! The worker pipeline.

/// Arguments of `wxnotify worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {}

/// Runs `wxnotify worker`.
pub async fn run(_args: WorkerArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("worker is not built yet")
}
