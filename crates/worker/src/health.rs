//! The worker's operations endpoints on `--metrics-listen`: Prometheus `/metrics`, `/livez`
//! (the process works: 200 even while RabbitMQ or Postgres is away, for a liveness probe),
//! `/readyz` (it can send now: consuming from RabbitMQ and Postgres answers, else 503 naming
//! what is missing, for a readiness probe) and `/healthz` (kept for existing checks: whether
//! the consumers are attached to RabbitMQ).

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use serde_json::json;
use sqlx::PgPool;

use crate::BrokerLink;
use wxnotify_core::health::{self, Readiness};
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

/// The worker's `/readyz`: whether it consumes from RabbitMQ and Postgres answers.
pub async fn worker_readiness(link: &BrokerLink, pool: &PgPool) -> Readiness {
    let consuming = link.is_consuming();
    let postgres = health::postgres(pool).await;
    Readiness::new()
        .check(
            "rabbitmq",
            consuming,
            if consuming {
                "consuming"
            } else {
                "disconnected"
            },
        )
        .check(
            "postgres",
            postgres.is_ok(),
            postgres.err().unwrap_or_else(|| "ok".into()),
        )
}

/// The worker's ops router: `/metrics`, `/livez`, `/readyz` and `/healthz`.
pub fn worker_router(link: BrokerLink, pool: PgPool) -> Router {
    let handle = metrics::metrics_handle();
    let healthz_link = link.clone();
    Router::new()
        .route("/livez", get(|| async { axum::Json(health::live()) }))
        .route(
            "/readyz",
            get(move || {
                let (link, pool) = (link.clone(), pool.clone());
                async move {
                    let ready = worker_readiness(&link, &pool).await;
                    let code = if ready.is_ready() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, axum::Json(ready))
                }
            }),
        )
        .route(
            "/healthz",
            get(move || async move { worker_health(&healthz_link) }),
        )
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
    tracing::info!(addr = %local, "serving /metrics, /livez, /readyz and /healthz");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    });
    Ok(local)
}
