//! The one error type of the HTTP API. A 4xx body says what was wrong with the request and how
//! to fix it; a 5xx body is generic, and its cause is logged once, here, with the full chain.
//! No body ever carries a secret, a stack trace or an upstream message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An HTTP error answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// 400: the request is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credential, or one that is unknown or expired; the message says which to send.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a WeChat push whose signature does not match.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such app, or no callback configured for it.
    #[error("{0}")]
    NotFound(String),
    /// 429: slow down; `Retry-After` says for how long (seconds).
    #[error("{message}")]
    TooManyRequests {
        /// What to tell the client.
        message: String,
        /// Seconds before trying again.
        retry_after: u32,
    },
    /// 503: a dependency (WeChat, Postgres) is away; try again later.
    #[error("service unavailable")]
    Unavailable(#[source] Option<anyhow::Error>),
    /// 500: our fault.
    #[error("internal error")]
    Internal(#[source] Option<anyhow::Error>),
}

impl HttpError {
    /// A 500 with its cause (logged when the response is built).
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        HttpError::Internal(Some(cause.into()))
    }

    /// A 503 with its cause (logged when the response is built).
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        HttpError::Unavailable(Some(cause.into()))
    }

    fn status(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn public_message(&self) -> String {
        match self {
            HttpError::Unavailable(_) => {
                "a service wxnotify depends on is unavailable; try again later".into()
            }
            HttpError::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }
}

impl From<sqlx::Error> for HttpError {
    fn from(e: sqlx::Error) -> Self {
        HttpError::internal(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let HttpError::Internal(Some(cause)) | HttpError::Unavailable(Some(cause)) = &self {
            tracing::error!(
                status = status.as_u16(),
                error = format!("{cause:#}"),
                "request failed"
            );
        }
        let body = axum::Json(serde_json::json!({ "error": self.public_message() }));
        let mut response = (status, body).into_response();
        if let HttpError::TooManyRequests { retry_after, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}
