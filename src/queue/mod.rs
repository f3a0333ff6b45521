//! RabbitMQ: topology, publishing, and the `enqueue` / `migrate` commands.

/// Arguments of `wxnotify enqueue`.
#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {}

/// Runs `wxnotify enqueue`.
pub async fn enqueue(_args: EnqueueArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("enqueue is not built yet")
}

/// Runs `wxnotify migrate`.
pub async fn migrate_command() -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("migrate is not built yet")
}
