//! `wxnotify demo`: the main job.

/// Arguments of `wxnotify demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Runs `wxnotify demo`.
pub async fn run(_args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("demo is not built yet")
}
