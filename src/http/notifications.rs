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

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use super::api_error::{ApiError, ErrorBody, FieldError, RETRY_AFTER_SECONDS};
use super::api_keys::Caller;
use super::job_input::{self, AcceptedInput, Context, Rejection};
use super::notification_store::{self as store, Claim, NotificationStatus, State as JobState};
use super::producer::ProducerApi;
use crate::domain::{AppName, Job};

/// The most jobs in one batch.
pub const MAX_BATCH: usize = 1_000;
/// The largest body of `POST /v1/notifications` (a job is at most 16 KiB as wxnotify writes it).
pub const SINGLE_BODY_LIMIT: usize = 64 * 1024;
/// The largest body of `POST /v1/notifications/batch`.
pub const BATCH_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// The producer API's routes, on their own state.
pub fn router(api: ProducerApi) -> Router {
    Router::new()
        .route(
            "/v1/notifications",
            post(create).layer(DefaultBodyLimit::max(SINGLE_BODY_LIMIT)),
        )
        .route(
            "/v1/notifications/batch",
            post(create_batch).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
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

/// What became of one job of a request.
enum Outcome {
    Accepted(String),
    Existing(Box<NotificationStatus>),
    Refused(ApiError),
}

/// `POST /v1/notifications`: one job.
#[utoipa::path(
    post,
    path = "/v1/notifications",
    tag = "notifications",
    security(("api_key" = [])),
    request_body(content = super::openapi::JobDocument, description = "One job, as in schemas/job.schema.json; `app` defaults to the key's app.", content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: RabbitMQ confirmed the job.", body = Accepted,
         headers(("Location" = String, description = "The status URL"))),
        (status = 200, description = "This id was accepted before with the same content: its current status.", body = NotificationStatus),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The job's app is not the key's app.", body = ErrorBody),
        (status = 409, description = "This id was used before with other content.", body = ErrorBody),
        (status = 422, description = "Invalid values: every problem with its JSON pointer.", body = ErrorBody),
        (status = 503, description = "RabbitMQ is unavailable: nothing was accepted; retry after `Retry-After` seconds with the same id.", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn create(
    State(api): State<ProducerApi>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value = parse_body(&body)?;
    let mut outcomes = submit(&api, &caller, vec![(String::new(), value)]).await?;
    match outcomes.pop().expect("one outcome per job") {
        Outcome::Accepted(id) => {
            let url = store::status_url(&id);
            let mut response = (
                StatusCode::ACCEPTED,
                axum::Json(Accepted {
                    id,
                    status_url: url.clone(),
                    state: JobState::Queued,
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
    request_body(content = super::openapi::BatchDocument, content_type = "application/json"),
    responses(
        (status = 200, description = "A result per item (each item's `status` is what a single POST would have answered). `Retry-After` is set when some items met an unavailable queue.", body = BatchResponse),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown or revoked one.", body = ErrorBody),
        (status = 422, description = "Not a batch: `jobs` missing, empty or longer than 1,000.", body = ErrorBody),
        (status = 503, description = "RabbitMQ is unavailable: no item was accepted.", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn create_batch(
    State(api): State<ProducerApi>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value = parse_body(&body)?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "",
            "a batch is an object: {\"jobs\": [job, …]}",
        )]));
    };
    let extra: Vec<FieldError> = obj
        .keys()
        .filter(|k| k.as_str() != "jobs")
        .map(|k| {
            FieldError::new(
                format!("/{}", job_input::escape(k)),
                "unknown field; a batch has only `jobs`",
            )
        })
        .collect();
    if !extra.is_empty() {
        return Err(ApiError::Invalid(extra));
    }
    let jobs = match obj.remove("jobs") {
        Some(Value::Array(jobs)) if !jobs.is_empty() && jobs.len() <= MAX_BATCH => jobs,
        Some(Value::Array(jobs)) => {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "/jobs",
                format!(
                    "has {} jobs; a batch holds 1 to {MAX_BATCH} (split larger ones)",
                    jobs.len()
                ),
            )]));
        }
        _ => {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "/jobs",
                "required: an array of 1 to 1,000 jobs",
            )]));
        }
    };
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
        .map(|(index, outcome)| match outcome {
            Outcome::Accepted(id) => {
                accepted += 1;
                BatchItem {
                    index,
                    status: 202,
                    status_url: Some(store::status_url(&id)),
                    id: Some(id),
                    state: Some(JobState::Queued),
                    error: None,
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
        (status = 401, description = "No API key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No accepted notification with this id for the key's app.", body = ErrorBody),
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

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))
}

/// Checks, claims, publishes and records the jobs of one request; one outcome per item, in
/// order. Fails as a whole only when Postgres fails.
async fn submit(
    api: &ProducerApi,
    caller: &Caller,
    items: Vec<(String, Value)>,
) -> Result<Vec<Outcome>, ApiError> {
    // The caller's templates, read once per request; unreadable: the worker checks again.
    let catalog = match crate::templates::Catalog::load_app(api.pool(), &caller.app).await {
        Ok(catalog) => Some(catalog),
        Err(e) => {
            tracing::warn!(error = %e, app = %caller.app, "template catalog unreadable; jobs are checked by the worker only");
            None
        }
    };
    let cx = Context {
        caller_app: &caller.app,
        apps: api.apps(),
        now: Utc::now(),
        catalog: catalog.as_ref(),
    };
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
    let mut valid: Vec<(usize, AcceptedInput)> = Vec::new();
    // A job id may appear twice in one batch: the same content is one job, other content 409.
    let mut first_of: HashMap<String, usize> = HashMap::new();
    let mut same_as: Vec<(usize, usize)> = Vec::new();
    for (i, (pointer, value)) in items.into_iter().enumerate() {
        match job_input::check_job(&value, &pointer, cx) {
            Err(Rejection::Invalid(errors)) => {
                outcomes.push(Some(Outcome::Refused(ApiError::Invalid(errors))))
            }
            Err(Rejection::ForbiddenApp(e)) => {
                outcomes.push(Some(Outcome::Refused(ApiError::Forbidden(e.message))))
            }
            Ok(input) => {
                let id = input.job.id.as_str().to_owned();
                match first_of.get(&id) {
                    Some(&j) => {
                        let first = &valid.iter().find(|(k, _)| *k == j).expect("recorded").1;
                        if first.content_sha256 == input.content_sha256 {
                            same_as.push((i, j));
                            outcomes.push(None);
                        } else {
                            outcomes.push(Some(Outcome::Refused(conflict(&id))));
                        }
                    }
                    None => {
                        first_of.insert(id, i);
                        valid.push((i, input));
                        outcomes.push(None);
                    }
                }
            }
        }
    }
    if !valid.is_empty() {
        let claims = store::claim(
            api.pool(),
            caller.key_id,
            &valid
                .iter()
                .map(|(_, v)| (v.job.id.as_str(), v.job.app.as_str(), v.content_sha256))
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(ApiError::database)?;
        let mut to_publish: Vec<(usize, Job)> = Vec::new();
        let mut existing: Vec<(usize, String)> = Vec::new();
        for ((i, input), claim) in valid.into_iter().zip(claims) {
            match claim {
                Claim::New | Claim::Retry => to_publish.push((i, input.job)),
                Claim::Existing => existing.push((i, input.job.id.as_str().to_owned())),
                Claim::Conflict => {
                    outcomes[i] = Some(Outcome::Refused(conflict(input.job.id.as_str())))
                }
            }
        }
        publish(api, &mut outcomes, to_publish).await?;
        fill_existing(api, &caller.app, &mut outcomes, existing).await?;
    }
    for (i, j) in same_as {
        outcomes[i] = Some(match &outcomes[j] {
            Some(Outcome::Accepted(id)) => Outcome::Accepted(id.clone()),
            Some(Outcome::Existing(s)) => Outcome::Existing(s.clone()),
            Some(Outcome::Refused(e)) => Outcome::Refused(copy_refusal(e)),
            None => unreachable!("the first item of an id has its outcome"),
        });
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every item has an outcome"))
        .collect())
}

/// Publishes with confirms and records which jobs RabbitMQ accepted.
async fn publish(
    api: &ProducerApi,
    outcomes: &mut [Option<Outcome>],
    to_publish: Vec<(usize, Job)>,
) -> Result<(), ApiError> {
    if to_publish.is_empty() {
        return Ok(());
    }
    let jobs: Vec<Job> = to_publish.iter().map(|(_, j)| j.clone()).collect();
    let results = match api.broker().publish(&jobs).await {
        Ok(results) => results,
        Err(e) => {
            tracing::warn!(error = %e, jobs = jobs.len(), "RabbitMQ unavailable: jobs refused with 503");
            for (i, _) in &to_publish {
                outcomes[*i] = Some(Outcome::Refused(ApiError::Unavailable(anyhow::anyhow!(
                    "{e}"
                ))));
            }
            return Ok(());
        }
    };
    let mut confirmed = Vec::new();
    for ((i, job), result) in to_publish.iter().zip(results) {
        outcomes[*i] = Some(match result {
            Ok(()) => {
                confirmed.push(job.id.as_str());
                Outcome::Accepted(job.id.as_str().to_owned())
            }
            Err(e) => Outcome::Refused(ApiError::Unavailable(e.into())),
        });
    }
    if let Err(e) = store::mark_accepted(api.pool(), &confirmed).await {
        // RabbitMQ has the jobs: they are accepted and will be sent. Their status shows once a
        // worker takes them; a repeat of the request publishes again (sent at most once).
        tracing::error!(error = %e, jobs = confirmed.len(), "confirmed jobs could not be marked accepted");
    }
    Ok(())
}

/// Answers ids accepted before with their current status.
async fn fill_existing(
    api: &ProducerApi,
    app: &AppName,
    outcomes: &mut [Option<Outcome>],
    existing: Vec<(usize, String)>,
) -> Result<(), ApiError> {
    if existing.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = existing.iter().map(|(_, id)| id.as_str()).collect();
    let statuses = store::statuses(api.pool(), app, &ids)
        .await
        .map_err(ApiError::database)?;
    let by_id: HashMap<&str, &NotificationStatus> =
        statuses.iter().map(|s| (s.id.as_str(), s)).collect();
    for (i, id) in &existing {
        outcomes[*i] = Some(match by_id.get(id.as_str()) {
            Some(s) => Outcome::Existing(Box::new((*s).clone())),
            None => Outcome::Refused(ApiError::internal(anyhow::anyhow!(
                "accepted job {id} has no status"
            ))),
        });
    }
    Ok(())
}

fn conflict(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "job id {id:?} was already used with different content; use a new id for a new notification"
    ))
}

fn copy_refusal(e: &ApiError) -> ApiError {
    match e {
        ApiError::Unauthorized(m) => ApiError::Unauthorized(m.clone()),
        ApiError::Forbidden(m) => ApiError::Forbidden(m.clone()),
        ApiError::NotFound(m) => ApiError::NotFound(m.clone()),
        ApiError::BadRequest(m) => ApiError::BadRequest(m.clone()),
        ApiError::Invalid(v) => ApiError::Invalid(v.clone()),
        ApiError::Conflict(m) => ApiError::Conflict(m.clone()),
        ApiError::TooManyRequests(w) => ApiError::TooManyRequests(*w),
        ApiError::Unavailable(c) => ApiError::Unavailable(anyhow::anyhow!("{c:#}")),
        ApiError::Internal(c) => ApiError::Internal(anyhow::anyhow!("{c:#}")),
    }
}
