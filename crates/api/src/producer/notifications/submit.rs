//! Submitting the jobs of one request, idempotently: check each, claim its id and content hash
//! in `api_notifications`, publish with confirms, and record which RabbitMQ accepted.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::producer::api_error::{ApiError, FieldError};
use crate::producer::api_keys::Caller;
use crate::producer::job_input::{self, AcceptedInput, Context, Rejection};
use crate::producer::link::ProducerApi;
use crate::producer::notification_store::{self as store, Claim, ClaimRequest, NotificationStatus};
use wxnotify_core::domain::{AppName, Job};

/// A job that passed its checks, and the hash of its content.
struct Valid {
    job: Job,
    content_sha256: [u8; 32],
}

/// What became of one job of a request.
pub(super) enum Outcome {
    /// Published and confirmed: the job id.
    Accepted(String),
    /// Accepted before with the same content: its current status.
    Existing(Box<NotificationStatus>),
    /// Refused, with the error a single request would have answered.
    Refused(ApiError),
}

/// Checks, claims, publishes and records the jobs of one request; one outcome per item, in
/// order, with the template check's warnings of the item (empty when it was refused). Fails as a whole only when Postgres fails. Each item is a slice of the body, parsed
/// only when it is checked (one item's tree at a time), and refused unparsed past
/// [`BATCH_ITEM_LIMIT`](super::BATCH_ITEM_LIMIT) bytes.
pub(super) async fn submit(
    api: &ProducerApi,
    caller: &Caller,
    items: Vec<(String, &RawValue)>,
) -> Result<Vec<(Outcome, Vec<FieldError>)>, ApiError> {
    // The caller's templates, read once per request; unreadable: the worker checks again.
    let catalog = match api.catalog(&caller.app).await {
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
        catalog: catalog.as_deref(),
    };
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
    let mut warnings: Vec<Vec<FieldError>> = Vec::with_capacity(items.len());
    let mut valid: Vec<(usize, Valid)> = Vec::new();
    // A job id may appear twice in one batch: the same content is one job, other content 409.
    let mut first_of: HashMap<String, usize> = HashMap::new();
    let mut same_as: Vec<(usize, usize)> = Vec::new();
    for (i, (pointer, raw)) in items.into_iter().enumerate() {
        warnings.push(Vec::new());
        match parse_item(raw, &pointer).and_then(|value| job_input::check_job(&value, &pointer, cx))
        {
            Err(Rejection::Invalid(errors)) => {
                outcomes.push(Some(Outcome::Refused(ApiError::Invalid(errors))))
            }
            Err(Rejection::ForbiddenApp(e)) => {
                outcomes.push(Some(Outcome::Refused(ApiError::Forbidden(e.message))))
            }
            Ok(AcceptedInput {
                job,
                content_sha256,
                warnings: found,
                ..
            }) => {
                warnings[i] = found;
                // The published bytes are made again when publishing: not kept for 1,000 jobs.
                let input = Valid {
                    job,
                    content_sha256,
                };
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
        let claims = api
            .claim(
                valid
                    .iter()
                    .map(|(_, v)| ClaimRequest {
                        job_id: v.job.id.as_str().to_owned(),
                        app: v.job.app.as_str().to_owned(),
                        content_sha256: v.content_sha256,
                        api_key_id: caller.key_id,
                    })
                    .collect(),
            )
            .await
            .map_err(ApiError::batched_database)?;
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
        .zip(warnings)
        .map(|(o, w)| match o {
            Outcome::Accepted(_) => (o, w),
            other => (other, Vec::new()),
        })
        .collect())
}

/// One item's tree, or 422 at its pointer when it is larger than any job can be.
fn parse_item(raw: &RawValue, pointer: &str) -> Result<Value, Rejection> {
    let limit = super::BATCH_ITEM_LIMIT;
    let len = raw.get().len();
    if len > limit {
        return Err(Rejection::Invalid(vec![
            crate::producer::api_error::FieldError::new(
                pointer,
                format!(
                    "is {len} bytes; a job is at most {limit} bytes as written (16 KiB as published)"
                ),
            ),
        ]));
    }
    serde_json::from_str(raw.get()).map_err(|e| {
        Rejection::Invalid(vec![crate::producer::api_error::FieldError::new(
            pointer,
            format!("not JSON: {e}"),
        )])
    })
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
    let (at, jobs): (Vec<(usize, store::JobKey)>, Vec<Job>) = to_publish
        .into_iter()
        .map(|(i, job)| {
            let key = (job.app.as_str().to_owned(), job.id.as_str().to_owned());
            ((i, key), job)
        })
        .unzip();
    let results = match api.broker().publish(jobs).await {
        Ok(results) => results,
        Err(e) => {
            tracing::warn!(error = %e, jobs = at.len(), "RabbitMQ unavailable: jobs refused with 503");
            for (i, _) in &at {
                outcomes[*i] = Some(Outcome::Refused(ApiError::Unavailable(anyhow::anyhow!(
                    "{e}"
                ))));
            }
            return Ok(());
        }
    };
    let mut confirmed = Vec::new();
    for ((i, key), result) in at.into_iter().zip(results) {
        outcomes[i] = Some(match result {
            Ok(()) => {
                let id = key.1.clone();
                confirmed.push(key);
                Outcome::Accepted(id)
            }
            Err(e) => Outcome::Refused(ApiError::Unavailable(e.into())),
        });
    }
    let accepted = confirmed.len();
    if let Err(e) = api.mark_accepted(confirmed).await {
        // RabbitMQ has the jobs: they are accepted and will be sent. Their status shows once a
        // worker takes them; a repeat of the request publishes again (sent at most once).
        tracing::error!(error = %e, jobs = accepted, "confirmed jobs could not be marked accepted");
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

/// 409 for a job id used before with other content.
fn conflict(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "job id {id:?} was already used with different content; use a new id for a new notification"
    ))
}

/// The same refusal again, for a repeated item of a batch (`ApiError` is not `Clone`).
fn copy_refusal(e: &ApiError) -> ApiError {
    match e {
        ApiError::Unauthorized(m) => ApiError::Unauthorized(m.clone()),
        ApiError::Forbidden(m) => ApiError::Forbidden(m.clone()),
        ApiError::NotFound(m) => ApiError::NotFound(m.clone()),
        ApiError::BadRequest(m) => ApiError::BadRequest(m.clone()),
        ApiError::Invalid(v) => ApiError::Invalid(v.clone()),
        ApiError::Conflict(m) => ApiError::Conflict(m.clone()),
        ApiError::TooManyRequests(w) => ApiError::TooManyRequests(*w),
        ApiError::TooManyFailures(w) => ApiError::TooManyFailures(*w),
        ApiError::Unavailable(c) => ApiError::Unavailable(anyhow::anyhow!("{c:#}")),
        ApiError::Internal(c) => ApiError::Internal(anyhow::anyhow!("{c:#}")),
    }
}
