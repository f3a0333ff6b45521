//! The OA follower sync.

/// Arguments of `wxnotify sync-followers`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {}

/// Runs `wxnotify sync-followers`.
pub async fn run(_args: SyncArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("sync-followers is not built yet")
}
