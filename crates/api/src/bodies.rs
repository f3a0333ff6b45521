//! Large request bodies in bounded memory: the one place their byte limits are enforced and
//! the one budget they share.
//!
//! - **Per route**: [`read`] refuses a body over the route's limit with **413** and a JSON body
//!   naming the limit, before reading it when `Content-Length` says so, else as soon as the
//!   limit is passed; nothing past the limit is held.
//! - **Together**: the routes that take large bodies (the producer batch, a campaign with its
//!   recipients inline) share [`BodyBudget`], [`BODY_BUDGET_BYTES`] of bodies being read and
//!   parsed at once. A request waits for its share (its `Content-Length`, else the route's
//!   limit) before its body is read, so eight clients sending the largest body at once cost
//!   what two do: the others wait a moment instead of multiplying the server's memory.
//!
//! The parsers behind them keep the cost of a body near its size: no `serde_json::Value` tree
//! of a whole array (see `producer::notifications::batch` and `admin::campaigns::body`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::Semaphore;

/// Bytes of large bodies read and parsed at the same time, all routes together (two of the
/// largest bodies any route takes).
pub const BODY_BUDGET_BYTES: usize = 16 * 1024 * 1024;

/// The budget is counted in these units (a semaphore has at most `u32::MAX` permits).
const UNIT: usize = 1024;

/// The shared budget of large bodies in flight.
#[derive(Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget::new(BODY_BUDGET_BYTES)
    }
}

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        BodyBudget {
            permits: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))),
        }
    }

    /// The process's one budget, shared by every router built in it.
    pub fn global() -> &'static BodyBudget {
        static GLOBAL: std::sync::OnceLock<BodyBudget> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(BodyBudget::default)
    }

    async fn admit(&self, limit: usize, req: Request, next: Next) -> Response {
        let declared = content_length(req.headers());
        if let Some(n) = declared.filter(|n| *n > limit) {
            return too_large(limit, Some(n));
        }
        let bodiless = matches!(req.method(), &Method::GET | &Method::HEAD) || declared == Some(0);
        if bodiless {
            return next.run(req).await;
        }
        let share = declared.unwrap_or(limit).min(limit).div_ceil(UNIT).max(1);
        let max = BODY_BUDGET_BYTES.div_ceil(UNIT);
        let share = u32::try_from(share.min(max)).unwrap_or(u32::MAX);
        let Ok(_permit) = self.permits.acquire_many(share).await else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        next.run(req).await
    }
}

/// The middleware of a route taking bodies of at most `limit` bytes (its state): answers 413 at
/// once when `Content-Length` is over it, else waits for the body's share of the process's
/// budget and holds it until the answer is ready.
///
/// `route.layer(axum::middleware::from_fn_with_state(LIMIT, bodies::budgeted))`
pub async fn budgeted(
    axum::extract::State(limit): axum::extract::State<usize>,
    req: Request,
    next: Next,
) -> Response {
    BodyBudget::global().admit(limit, req, next).await
}

/// The declared length of a body, if any.
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The 413 answer, an RFC 9457 problem: `{"type", "title", "status", "detail", "error", "code":
/// "payload_too_large", "limit_bytes"}`.
pub fn too_large(limit: usize, declared: Option<usize>) -> Response {
    use crate::problem;
    let size = match declared {
        Some(n) => format!("the body is {n} bytes"),
        None => "the body is larger".to_owned(),
    };
    let detail = format!(
        "{size}; this endpoint takes at most {limit} bytes ({}): split the request",
        human(limit)
    );
    let code = "payload_too_large";
    problem::response(
        StatusCode::PAYLOAD_TOO_LARGE,
        serde_json::json!({
            "type": problem::type_uri(code),
            "title": problem::title(code),
            "status": StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
            "detail": detail,
            "error": detail,
            "code": code,
            "limit_bytes": limit,
        }),
    )
}

/// `8 MiB`, `64 KiB`.
fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Reads a whole body of at most `limit` bytes; past it, the 413 answer (the rest is not
/// read). A body that breaks off is a 400.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    let declared = content_length(headers);
    if let Some(n) = declared.filter(|n| *n > limit) {
        return Err(too_large(limit, Some(n)));
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({
                    "error": format!("the body could not be read: {e}"),
                    "code": "bad_request",
                })),
            )
                .into_response()
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit, None));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_over_its_limit_is_a_413_naming_the_limit() {
        let mut headers = HeaderMap::new();
        let ok = read(&headers, Body::from("12345"), 5).await.unwrap();
        assert_eq!(&ok[..], b"12345");
        let refused = read(&headers, Body::from("123456"), 5).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        headers.insert(header::CONTENT_LENGTH, "9000000".parse().unwrap());
        let refused = read(&headers, Body::empty(), 8 << 20).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["limit_bytes"], 8 << 20);
        assert!(v["error"].as_str().unwrap().contains("8 MiB"), "{v}");
    }

    #[tokio::test]
    async fn the_budget_lets_two_of_the_largest_bodies_in_at_once() {
        let budget = BodyBudget::new(16 * UNIT);
        let a = budget.permits.clone().try_acquire_many_owned(8).unwrap();
        let _b = budget.permits.clone().try_acquire_many_owned(8).unwrap();
        assert!(budget.permits.clone().try_acquire_many_owned(1).is_err());
        drop(a);
        assert!(budget.permits.clone().try_acquire_many_owned(8).is_ok());
    }
}
