//! `wxnotify-sandbox mock-wechat`: the fake WeChat API server (its flags stay with the fake, in the
//! sandbox).

use std::process::ExitCode;

pub use crate::mock_wechat::MockArgs;

/// Runs `wxnotify-sandbox mock-wechat` until Ctrl-C.
pub async fn run(args: MockArgs) -> anyhow::Result<ExitCode> {
    crate::mock_wechat::run(args).await
}
