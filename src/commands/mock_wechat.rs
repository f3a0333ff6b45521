//! `wxnotify mock-wechat`: the fake WeChat API server (its flags stay with the fake, in the
//! sandbox).

use std::process::ExitCode;

pub use crate::sandbox::mock_wechat::MockArgs;

/// Runs `wxnotify mock-wechat` until Ctrl-C.
pub async fn run(args: MockArgs) -> anyhow::Result<ExitCode> {
    crate::sandbox::mock_wechat::run(args).await
}
