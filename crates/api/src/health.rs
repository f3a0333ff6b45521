//! `GET /livez` (the process works: always 200, for a liveness probe), `GET /readyz` (it can do
//! its job now: Postgres answers, else 503 naming what is missing, for a readiness probe),
//! `GET /healthz` (kept for existing checks: always 200 `ok`) and `GET /metrics` (Prometheus
//! text, rendered inside the API's own listener: no second port is opened).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::AppState;
use wxnotify_core::health::{self, Readiness};

pub use wxnotify_core::metrics::metrics_handle;

/// Always 200 `ok`: the process is up (what `/healthz` always answered; prefer `/livez`).
pub async fn healthz() -> &'static str {
    "ok"
}

/// Always 200 `{"status":"ok"}`: the process works, whether or not Postgres answers.
pub async fn livez() -> Json<serde_json::Value> {
    Json(health::live())
}

/// 200 `{"status":"ready",...}` when Postgres answers, else 503
/// `{"status":"unavailable","missing":["postgres"],...}`.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let postgres = health::postgres(state.pool()).await;
    let ready = Readiness::new().check(
        "postgres",
        postgres.is_ok(),
        postgres.err().unwrap_or_else(|| "ok".into()),
    );
    let code = if ready.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(ready))
}

/// The metrics in Prometheus's text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, wxnotify_core::metrics::CONTENT_TYPE)],
        wxnotify_core::metrics::render(state.metrics()),
    )
}
