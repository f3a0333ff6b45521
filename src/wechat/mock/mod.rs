//! The fake WeChat API server.

/// Arguments of `wxnotify mock-wechat`.
#[derive(Debug, clap::Args)]
pub struct MockArgs {}

/// Runs `wxnotify mock-wechat`.
pub async fn run(_args: MockArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("mock-wechat is not built yet")
}
