//! The error answers of the producer API (`/v1/notifications…`). Every body is an RFC 9457
//! problem (`application/problem+json`): `type` (`urn:wxnotify:problem:<code>`), `title`,
//! `status`, `detail` (what to do), and beside them `error` (the same text as `detail`, kept for
//! clients that read it), `code` (machine-readable) and, for 422, `errors`
//! (`[{"pointer", "message"}]`). 5xx bodies are generic; their cause is logged here, once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Seconds a producer is told to wait when RabbitMQ or Postgres is away.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// One problem in a request body: where (RFC 6901 JSON pointer into the request body) and what
/// to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer of the offending value in the request body, e.g. `/data/thing1` or
    /// `/jobs/3/template_id` (`""` is the whole body).
    pub pointer: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// A problem at `pointer`.
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// The body of every error answer: an RFC 9457 problem with wxnotify's members beside the
/// standard ones.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The kind of problem, `urn:wxnotify:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem (the same for every problem of a `code`).
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this request, in words a developer can act on.
    pub detail: String,
    /// The same text as `detail` (kept for clients that read `error`).
    pub error: String,
    /// A stable code: `unauthorized`, `forbidden_app`, `not_found`, `bad_request`,
    /// `payload_too_large`, `validation_failed`, `conflict`, `unavailable`, `internal`.
    pub code: &'static str,
    /// With `validation_failed`: every problem found, each with its JSON pointer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Whole seconds for `Retry-After` (at least 1).
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// An error answer of the producer API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no key, an unknown key or a revoked key.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the key's app is not the job's app.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such notification for this key's app.
    #[error("{0}")]
    NotFound(String),
    /// 400: the body is not JSON of the expected shape at all.
    #[error("{0}")]
    BadRequest(String),
    /// 422: the JSON is a request, but some values are wrong.
    #[error("the request has {} invalid value(s); see `errors`", .0.len())]
    Invalid(Vec<FieldError>),
    /// 409: the job id was used before with other content.
    #[error("{0}")]
    Conflict(String),
    /// 429: this API key made more requests than its rate allows; `Retry-After` is set.
    #[error("too many requests for this API key")]
    TooManyRequests(std::time::Duration),
    /// 429: too many unknown or revoked API keys from this client address; `Retry-After` is
    /// set.
    #[error("too many unknown API keys from this address")]
    TooManyFailures(std::time::Duration),
    /// 503: RabbitMQ (or Postgres) is away; nothing was accepted. `Retry-After` is set.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 500: our fault.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 500 with its cause.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(cause.into())
    }

    /// A Postgres failure: 503 when Postgres cannot be reached, else 500.
    pub fn database(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                ApiError::Unavailable(e.into())
            }
            other => ApiError::Internal(other.into()),
        }
    }

    /// The error of a batched statement (shared by the requests of its batch), classified
    /// like [`ApiError::database`].
    pub fn batched_database(e: wxnotify_core::batch::DbError) -> Self {
        let unavailable = matches!(
            *e.0,
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
        );
        if unavailable {
            ApiError::Unavailable(e.into())
        } else {
            ApiError::Internal(e.into())
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) | ApiError::TooManyFailures(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body (without logging anything).
    pub fn body(&self) -> ErrorBody {
        let (code, error) = match self {
            ApiError::Unauthorized(m) => ("unauthorized", m.clone()),
            ApiError::Forbidden(m) => ("forbidden_app", m.clone()),
            ApiError::NotFound(m) => ("not_found", m.clone()),
            ApiError::BadRequest(m) => ("bad_request", m.clone()),
            ApiError::Invalid(_) => ("validation_failed", self.to_string()),
            ApiError::Conflict(m) => ("conflict", m.clone()),
            ApiError::TooManyRequests(wait) => (
                "rate_limited",
                format!(
                    "this API key is over its request rate; nothing was accepted, retry after {} s (or send jobs in batches)",
                    retry_after_secs(*wait)
                ),
            ),
            ApiError::TooManyFailures(wait) => (
                "too_many_failures",
                format!(
                    "too many requests from your address with an unknown or revoked API key; nothing was accepted, retry after {} s with a valid key (`wxnotify api-key list`)",
                    retry_after_secs(*wait)
                ),
            ),
            ApiError::Unavailable(_) => (
                "unavailable",
                format!(
                    "the message queue is unavailable; nothing was accepted, retry after {RETRY_AFTER_SECONDS} s with the same job ids"
                ),
            ),
            ApiError::Internal(_) => ("internal", "internal error".into()),
        };
        let errors = match self {
            ApiError::Invalid(errors) => errors.clone(),
            _ => Vec::new(),
        };
        ErrorBody {
            problem_type: crate::problem::type_uri(code),
            title: crate::problem::title(code),
            status: self.status().as_u16(),
            detail: error.clone(),
            error,
            code,
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) | ApiError::Unavailable(cause) = &self {
            tracing::error!(
                status = status.as_u16(),
                error = format!("{cause:#}"),
                "producer API request failed"
            );
        }
        let mut response = crate::problem::response(status, self.body());
        let headers = response.headers_mut();
        match self {
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            ApiError::TooManyRequests(wait) | ApiError::TooManyFailures(wait) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(wait)),
                );
            }
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"wxnotify\""),
                );
            }
            _ => {}
        }
        response
    }
}
