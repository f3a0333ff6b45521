//! The errors of the admin API: a JSON body `{"error": "..."}` that says what to do; 5xx causes
//! are logged here once and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An admin API error answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 404: no admin or viewer token is configured, so the admin surface does not exist.
    #[error("not found")]
    Off,
    /// 401: no token, or not one of the configured ones.
    #[error(
        "a valid admin or viewer token is required: send `Authorization: Bearer <token>` with your personal token (from `wxnotify admin-user add` or `rotate`)"
    )]
    Unauthorized,
    /// 429: too many failed tries from this client or with this token prefix; the wait is
    /// sent as `Retry-After`.
    #[error(
        "too many failed tries from your address (or with this token's prefix): wait {} s, then use a valid admin token",
        crate::failures::retry_after_secs(*.0)
    )]
    TooManyTries(std::time::Duration),
    /// 403: the role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing.
    #[error("{0}")]
    NotFound(String),
    /// 400: the request is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 409: the request conflicts with the state of things (e.g. a template WeChat lists).
    #[error("{0}")]
    Conflict(String),
    /// 503: RabbitMQ or Postgres is away.
    #[error("a service wxnotify depends on is unavailable; try again later")]
    Unavailable(#[source] anyhow::Error),
    /// 500: our fault.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AdminError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Off | AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
            AdminError::TooManyTries(_) => StatusCode::TOO_MANY_REQUESTS,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs a 5xx cause (once); returns the public message.
    pub fn public_message(&self) -> String {
        if let AdminError::Internal(cause) | AdminError::Unavailable(cause) = self {
            tracing::error!(
                status = self.status().as_u16(),
                error = format!("{cause:#}"),
                "admin request failed"
            );
        }
        self.to_string()
    }
}

impl From<wxnotify_core::bounds::OutOfRange> for AdminError {
    fn from(e: wxnotify_core::bounds::OutOfRange) -> Self {
        AdminError::BadRequest(e.to_string())
    }
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        AdminError::Internal(e.into())
    }
}

/// The JSON error body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and how to fix it.
    pub error: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        let unauthorized = matches!(self, AdminError::Unauthorized);
        let retry_after = match &self {
            AdminError::TooManyTries(wait) => Some(crate::failures::retry_after_secs(*wait)),
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.public_message(),
            }),
        )
            .into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"wxnotify admin\""),
            );
        }
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
