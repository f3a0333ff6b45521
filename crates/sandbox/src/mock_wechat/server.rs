//! The HTTP/1.1 server under the fake: our own accept loop on hyper rather than `axum::serve`,
//! because a fault must be able to close a connection without answering, which only a service
//! error does. Also runs the janitor that prunes stale state.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::routes::DropConnection;
use super::state::Mock;

/// How often stale de-duplication keys, codes and tokens are pruned.
const JANITOR_PERIOD: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The error that makes hyper close a connection without writing a response.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

/// Serves `router` on `listener` until `cancel` fires, then drains for up to
/// [`DRAIN_TIMEOUT`].
pub(super) async fn serve(listener: TcpListener, router: Router, cancel: CancellationToken) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %err, "mock-wechat: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // No timer: hyper's per-request header timeout would cost a timer entry per request,
        // and a test fake has no slow clients to fend off.
        let conn =
            http1::Builder::new().serve_connection(TokioIo::new(stream), service(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "mock-wechat: connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("mock-wechat: some connections did not finish in time");
    }
}

/// The per-connection service: the router, except that a response marked [`DropConnection`]
/// becomes an error, on which hyper closes the connection unanswered.
fn service(
    router: Router,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Dropped,
    Future = impl Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        async move {
            let resp = match router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if resp.extensions().get::<DropConnection>().is_some() {
                Err(Dropped)
            } else {
                Ok(resp)
            }
        }
    })
}

/// Prunes `mock` every [`JANITOR_PERIOD`] until `cancel` fires.
pub(super) async fn janitor(mock: Arc<Mock>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(JANITOR_PERIOD);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => mock.prune(),
        }
    }
}
