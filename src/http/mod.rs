//! The HTTP API of `wxnotify serve`.

/// Arguments of `wxnotify serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Runs `wxnotify serve`.
pub async fn run(_args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("serve is not built yet")
}
