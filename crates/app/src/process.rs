//! What a process of wxnotify shares with every binary: the exit codes and what maps an error
//! to one, and the shutdown signals.

use tokio_util::sync::CancellationToken;

/// Exit code for a run that worked.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure of the work itself (WeChat refused, jobs rejected …).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad configuration or arguments: fix the settings and run again.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code when a service (Postgres, RabbitMQ, WeChat) could not be reached: try again later.
pub const EXIT_UNAVAILABLE: u8 = 3;

/// Maps an error to an exit code by what caused it: a setting to fix is 2, a service that
/// could not be reached is 3, anything else 1.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    let misconfigured = err.chain().any(|e| {
        e.is::<wxnotify_core::config::ConfigError>()
            || e.is::<wxnotify_core::at_rest::OpenError>()
            || matches!(
                e.downcast_ref::<wxnotify_core::queue::ConnectError>(),
                Some(wxnotify_core::queue::ConnectError::Url(_))
            )
    });
    if misconfigured {
        EXIT_CONFIG
    } else if err.chain().any(|e| {
        e.is::<sqlx::Error>()
            || e.is::<lapin::Error>()
            || matches!(
                e.downcast_ref::<wxnotify_core::queue::PublishError>(),
                Some(wxnotify_core::queue::PublishError::NoBroker { .. })
            )
            || e.is::<std::io::Error>()
            || e.is::<wxnotify_core::queue::ConnectError>()
    }) {
        EXIT_UNAVAILABLE
    } else {
        EXIT_FAILURE
    }
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot listen for SIGTERM");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    token.cancel();
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let token = CancellationToken::new();
    cancel_on_signal(token.clone()).await;
}
