//! The worker's operations endpoints on `--metrics-listen`: Prometheus `/metrics` and
//! `/healthz` (are the consumers attached to RabbitMQ?).

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use serde_json::json;

use crate::BrokerLink;
use wxnotify_core::metrics;

/// The worker's `/healthz`: 200 `{"status":"ok","rabbitmq":"consuming"}` while its consumers
/// are attached, 503 `{"status":"unavailable","rabbitmq":"disconnected"}` while it connects or
/// reconnects to RabbitMQ.
pub fn worker_health(link: &BrokerLink) -> (StatusCode, axum::Json<serde_json::Value>) {
    if link.is_consuming() {
        let body = json!({"status": "ok", "rabbitmq": "consuming"});
        (StatusCode::OK, axum::Json(body))
    } else {
        let body = json!({"status": "unavailable", "rabbitmq": "disconnected"});
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body))
    }
}

/// The worker's ops router: `/metrics` and `/healthz` (see [`worker_health`]).
pub fn worker_router(link: BrokerLink) -> Router {
    let handle = metrics::metrics_handle();
    Router::new()
        .route("/healthz", get(move || async move { worker_health(&link) }))
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                        metrics::render(&handle),
                    )
                }
            }),
        )
}

/// Binds `addr` and serves `router` on it until `shutdown` resolves (in a task of its own).
pub async fn spawn(
    addr: std::net::SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics (--metrics-listen)"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving /metrics and /healthz");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    });
    Ok(local)
}
