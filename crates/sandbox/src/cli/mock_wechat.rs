//! `wxnotify-sandbox mock-wechat`: the fake WeChat API server (its flags stay with the fake, in the
//! sandbox).

use std::process::ExitCode;

pub use wxnotify_sandbox::mock_wechat::MockArgs;

/// Runs `wxnotify-sandbox mock-wechat` until Ctrl-C.
pub async fn run(args: MockArgs) -> anyhow::Result<ExitCode> {
    wxnotify_sandbox::mock_wechat::run(args).await
}
