//! What `serve` records of every request, on every address: its request id, one access-log
//! line, and the metrics `wxnotify_http_requests_total` (by route, method, status) and
//! `wxnotify_http_request_duration_seconds` (by route, method).
//!
//! The request id is the client's `X-Request-Id` when it is sane (1 to [`MAX_REQUEST_ID`]
//! printable ASCII characters, no spaces), else a new UUID; it is put back on the request (so
//! handlers and proxies behind see the one used), on the answer's `X-Request-Id`, on the access
//! log line and on the span every log line of the request is written in. The route is the
//! matched route template (`/admin/api/campaigns/{id}`), never the raw path, so the metrics'
//! labels stay bounded; a request that matched no route is counted as `unmatched`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The request id's header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The client's request id when it is sane (see the module doc).
pub fn sane_request_id(value: &HeaderValue) -> Option<&str> {
    let id = value.to_str().ok()?;
    let sane =
        !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic());
    sane.then_some(id)
}

/// The middleware (`axum::middleware::from_fn(access::record)`), applied to each address's
/// whole router so it sees the matched route.
pub async fn record(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane_request_id)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let header = HeaderValue::from_str(&id).expect("a sane id or a UUID is a header value");
    request
        .headers_mut()
        .insert(REQUEST_ID.clone(), header.clone());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    response.headers_mut().insert(REQUEST_ID.clone(), header);
    metrics::counter!("wxnotify_http_requests_total",
        "route" => route.clone(), "method" => method.to_string(), "status" => status.as_str().to_owned())
    .increment(1);
    let route_label = route.clone();
    metrics::histogram!("wxnotify_http_request_duration_seconds",
        "route" => route, "method" => method.to_string())
    .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            target: "wxnotify::access",
            request_id = %id,
            method = %method,
            route = %route_label,
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request answered"
        );
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_ids_are_taken_from_the_client() {
        let id = |s: &str| sane_request_id(&HeaderValue::from_str(s).unwrap()).map(str::to_owned);
        assert_eq!(id("abc-123_x.Y").as_deref(), Some("abc-123_x.Y"));
        assert_eq!(id(&"a".repeat(MAX_REQUEST_ID)).map(|s| s.len()), Some(128));
        assert_eq!(id(&"a".repeat(MAX_REQUEST_ID + 1)), None);
        assert_eq!(id(""), None);
        assert_eq!(id("two words"), None);
        assert_eq!(id("tab\there"), None);
        let latin1 = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert_eq!(sane_request_id(&latin1), None);
    }
}
