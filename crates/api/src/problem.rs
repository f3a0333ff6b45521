//! RFC 9457 problem details: the one shape of the producer API's error answers (and of the
//! 413 every surface answers), `application/problem+json` with `type`, `title`, `status` and
//! `detail`, and wxnotify's own members beside them (`error`, `code`, `errors`, …).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The media type of a problem.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The `type` of a problem with wxnotify's `code`: a URN that names the kind of problem (it is
/// an identifier, not a page to fetch; `docs/api.md` lists the codes).
pub fn type_uri(code: &str) -> String {
    format!("urn:wxnotify:problem:{code}")
}

/// The short, fixed summary of a problem of `code` (RFC 9457 `title`).
pub fn title(code: &str) -> &'static str {
    match code {
        "unauthorized" => "Unauthorized",
        "forbidden_app" => "Another app's job",
        "not_found" => "Not found",
        "bad_request" => "Bad request",
        "payload_too_large" => "Body too large",
        "validation_failed" => "Invalid values",
        "conflict" => "Job id used with other content",
        "rate_limited" => "Over the API key's rate",
        "too_many_failures" => "Too many failed authentications",
        "unavailable" => "Queue unavailable",
        _ => "Internal error",
    }
}

/// `body` (a JSON object with the problem members) answered with `status` as
/// `application/problem+json`.
pub fn response(status: StatusCode, body: impl serde::Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
