//! `GET /healthz` (the process answers), `GET /readyz` (Postgres answers) and `GET /metrics`
//! (Prometheus text, rendered inside the API's own listener: no second port is opened).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;
use crate::error::HttpError;

pub use wxnotify_core::metrics::metrics_handle;

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
    (
        [(header::CONTENT_TYPE, wxnotify_core::metrics::CONTENT_TYPE)],
        wxnotify_core::metrics::render(state.metrics()),
    )
}
