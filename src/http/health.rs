//! `GET /healthz` (the process answers), `GET /readyz` (Postgres answers) and `GET /metrics`
//! (Prometheus text, rendered inside the API's own listener: no second port is opened).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::AppState;
use super::error::HttpError;

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

/// Always 200: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// 200 when Postgres answers, else 503.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, HttpError> {
    sqlx::query("SELECT 1")
        .execute(state.pool())
        .await
        .map_err(HttpError::unavailable)?;
    Ok("ready")
}

/// The metrics in Prometheus's text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let handle = state.metrics();
    handle.run_upkeep();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
