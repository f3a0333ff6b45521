//! `POST /v1/notifications`, `POST /v1/notifications/batch` and `GET /v1/notifications/{id}`:
//! jobs over HTTP for producers in any language.
//!
//! A job is answered 202 (accepted, with its id and status URL) only after RabbitMQ confirmed
//! it. Its id is the idempotency key: the id and the SHA-256 of the job's normalised JSON are
//! written to `api_notifications` *before* publishing, so the same id with the same content
//! answers with the existing status (200) and with other content 409, even when two requests
//! race. A publish that was not confirmed leaves the row unaccepted: the same request again
//! publishes again (the ledger sends a job id at most once), and the status says "not found"
//! until then.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

mod batch;
mod idempotency;
mod submit;

use self::submit::{Outcome, submit};
use crate::producer::api_error::{ApiError, ErrorBody, FieldError, RETRY_AFTER_SECONDS};
use crate::producer::api_keys::Caller;
use crate::producer::link::ProducerApi;
use crate::producer::notification_store::{self as store, NotificationStatus, State as JobState};

/// The most jobs in one batch.
pub const MAX_BATCH: usize = 1_000;
/// The largest body of `POST /v1/notifications` (a job is at most 16 KiB as wxnotify writes it).
pub const SINGLE_BODY_LIMIT: usize = 64 * 1024;
/// The largest body of `POST /v1/notifications/batch`.
pub const BATCH_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// The largest job of a batch, as written in the body (what a single POST may be).
pub const BATCH_ITEM_LIMIT: usize = SINGLE_BODY_LIMIT;

/// The producer API's routes, on their own state.
pub fn router(api: ProducerApi) -> Router {
    Router::new()
        .route("/v1/notifications", post(create))
        .route(
            "/v1/notifications/batch",
            post(create_batch).layer(axum::middleware::from_fn_with_state(
                BATCH_BODY_LIMIT,
                crate::bodies::budgeted,
            )),
        )
        .route("/v1/notifications/{id}", get(status))
        .with_state(api)
}

/// The answer for a job that was accepted now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The job id (the one given, or a generated UUID v7).
    pub id: String,
    /// Where its status is (`GET`).
    pub status_url: String,
    /// Always `queued`.
    pub state: JobState,
    /// What the template check found worth saying, each at the JSON pointer of what it is
    /// about (a format rule WeChat may not enforce, a retired key, a catalog never synced, a
    /// value `truncate` shortened). The job is sent all the same; empty when there is nothing.
    pub warnings: Vec<FieldError>,
}

/// One item's result in a batch answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchItem {
    /// The item's position in `jobs`.
    pub index: usize,
    /// What a single `POST /v1/notifications` would have answered: 202 accepted now, 200 the
    /// same job accepted before, 403, 409, 422, or 503 (retry it).
    pub status: u16,
    /// The job id, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where its status is (202 and 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    /// Its state (202: `queued`; 200: the existing status's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// With 202: the template check's warnings, as in a single POST's answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FieldError>,
}

/// The answer to a batch: a result per item, in order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    /// Items accepted now (202).
    pub accepted: usize,
    /// Items accepted before with the same content (200).
    pub existing: usize,
    /// Items refused (4xx) or not accepted because the queue was unavailable (503).
    pub rejected: usize,
    /// One result per item of `jobs`, in order.
    pub results: Vec<BatchItem>,
}

/// `POST /v1/notifications`: one job.
#[utoipa::path(
    post,
    path = "/v1/notifications",
    tag = "notifications",
    security(("api_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "The job id, as an alternative to the body's `id` (the same meaning; both given and different is a 400). A request with neither is not idempotent: the server makes an id, and a retry of it sends a second message.")),
    request_body(content = crate::openapi::JobDocument, description = "One job, as in schemas/job.schema.json; `app` defaults to the key's app. Give `id` (or the `Idempotency-Key` header) to make retries safe: without either, a retried request sends again.", content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: RabbitMQ confirmed the job. `warnings` lists what the template check found worth saying (the job is sent all the same).", body = Accepted,
         headers(("Location" = String, description = "The status URL"))),
        (status = 200, description = "This id was accepted before with the same content: its current status.", body = NotificationStatus),
        (status = 400, description = "The body is not JSON, or the Idempotency-Key header is not a valid job id or differs from the body's `id`.", body = ErrorBody, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB (`code` `payload_too_large`, `limit_bytes`).", body = ErrorBody, content_type = "application/problem+json"),
        (status = 401, description = "No API key, or an unknown or revoked one.", body = ErrorBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with this API key (`WXNOTIFY_API_KEY_RATE` per second): retry after `Retry-After` seconds.", body = ErrorBody, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 403, description = "The job's app is not the key's app.", body = ErrorBody, content_type = "application/problem+json"),
        (status = 409, description = "This id was used before with other content.", body = ErrorBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values: every problem with its JSON pointer.", body = ErrorBody, content_type = "application/problem+json"),
        (status = 503, description = "RabbitMQ is unavailable: nothing was accepted; retry after `Retry-After` seconds with the same id.", body = ErrorBody, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn create(
    State(api): State<ProducerApi>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = match crate::bodies::read(&headers, body, SINGLE_BODY_LIMIT).await {
        Ok(body) => body,
        Err(too_large) => return Ok(too_large),
    };
    let value = batch::raw_body(&body)?;
    let keyed = idempotency::with_key(&headers, value)?;
    let value = keyed.as_deref().unwrap_or(value);
    let mut outcomes = submit(&api, &caller, vec![(String::new(), value)]).await?;
    let (outcome, warnings) = outcomes.pop().expect("one outcome per job");
    match outcome {
        Outcome::Accepted(id) => {
            let url = store::status_url(&id);
            let mut response = (
                StatusCode::ACCEPTED,
                axum::Json(Accepted {
                    id,
                    status_url: url.clone(),
                    state: JobState::Queued,
                    warnings,
                }),
            )
                .into_response();
            if let Ok(location) = HeaderValue::from_str(&url) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(response)
        }
        Outcome::Existing(status) => Ok((StatusCode::OK, axum::Json(*status)).into_response()),
        Outcome::Refused(e) => Err(e),
    }
}

/// `POST /v1/notifications/batch`: up to 1,000 jobs, a result per job.
#[utoipa::path(
    post,
    path = "/v1/notifications/batch",
    tag = "notifications",
    security(("api_key" = [])),
    request_body(content = crate::openapi::BatchDocument, content_type = "application/json"),
    responses(
        (status = 200, description = "A result per item (each item's `status` is what a single POST would have answered). `Retry-After` is set when some items met an unavailable queue.", body = BatchResponse),
        (status = 400, description = "The body is not JSON.", body = ErrorBody, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 8 MiB (`code` `payload_too_large`, `limit_bytes`).", body = ErrorBody, content_type = "application/problem+json"),
        (status = 401, description = "No API key, or an unknown or revoked one.", body = ErrorBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with this API key (`WXNOTIFY_API_KEY_RATE` per second): retry after `Retry-After` seconds.", body = ErrorBody, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 422, description = "Not a batch: `jobs` missing, empty or longer than 1,000 (refused while reading); an item over 64 KiB is refused unread.", body = ErrorBody, content_type = "application/problem+json"),
        (status = 503, description = "RabbitMQ is unavailable: no item was accepted.", body = ErrorBody, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn create_batch(
    State(api): State<ProducerApi>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = match crate::bodies::read(&headers, body, BATCH_BODY_LIMIT).await {
        Ok(body) => body,
        Err(too_large) => return Ok(too_large),
    };
    idempotency::refuse_on_batch(&headers)?;
    let jobs = batch::jobs(&body)?;
    let items = jobs
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("/jobs/{i}"), v))
        .collect();
    let outcomes = submit(&api, &caller, items).await?;
    let (mut accepted, mut existing, mut unavailable) = (0, 0, 0);
    let results: Vec<BatchItem> = outcomes
        .into_iter()
        .enumerate()
        .map(|(index, (outcome, warnings))| match outcome {
            Outcome::Accepted(id) => {
                accepted += 1;
                BatchItem {
                    index,
                    status: 202,
                    status_url: Some(store::status_url(&id)),
                    id: Some(id),
                    state: Some(JobState::Queued),
                    error: None,
                    warnings,
                }
            }
            Outcome::Existing(status) => {
                existing += 1;
                BatchItem {
                    index,
                    status: 200,
                    status_url: Some(status.status_url),
                    id: Some(status.id),
                    state: Some(status.state),
                    error: None,
                    warnings: Vec::new(),
                }
            }
            Outcome::Refused(e) => {
                if matches!(e, ApiError::Unavailable(_)) {
                    unavailable += 1;
                }
                BatchItem {
                    index,
                    status: e.status().as_u16(),
                    id: None,
                    status_url: None,
                    state: None,
                    error: Some(e.body()),
                    warnings: Vec::new(),
                }
            }
        })
        .collect();
    if unavailable > 0 && accepted == 0 && existing == 0 {
        return Err(ApiError::Unavailable(anyhow::anyhow!(
            "no job of the batch could be published"
        )));
    }
    let rejected = results.len() - accepted - existing;
    let mut response = axum::Json(BatchResponse {
        accepted,
        existing,
        rejected,
        results,
    })
    .into_response();
    if unavailable > 0 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    Ok(response)
}

/// `GET /v1/notifications/{id}`: where a notification is.
#[utoipa::path(
    get,
    path = "/v1/notifications/{id}",
    tag = "notifications",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "Its status.", body = NotificationStatus),
        (status = 401, description = "No API key, or an unknown or revoked one.", body = ErrorBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with this API key (`WXNOTIFY_API_KEY_RATE` per second): retry after `Retry-After` seconds.", body = ErrorBody, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 404, description = "No accepted notification with this id for the key's app.", body = ErrorBody, content_type = "application/problem+json"),
    )
)]
pub async fn status(
    State(api): State<ProducerApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<NotificationStatus>, ApiError> {
    let mut found = store::statuses(api.pool(), &caller.app, &[id.as_str()])
        .await
        .map_err(ApiError::database)?;
    found.pop().map(axum::Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no accepted notification {id:?} for app {}",
            caller.app
        ))
    })
}
