//! The operations endpoints of a process: Prometheus `/metrics` and `/healthz`, served by the
//! worker on `--metrics-listen` (and the metrics recorder `serve` renders too).

use std::sync::OnceLock;

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::delivery::BrokerLink;

/// The process's Prometheus recorder, installed globally on first use. If another recorder is
/// already installed (a host program's), a private one is returned and only its metrics show.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

/// The metrics of `handle` in Prometheus's text format.
pub fn render_metrics(handle: &PrometheusHandle) -> impl IntoResponse + use<> {
    handle.run_upkeep();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

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
    let handle = metrics_handle();
    Router::new()
        .route("/healthz", get(move || async move { worker_health(&link) }))
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move { render_metrics(&handle) }
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
