//! One delivery from its arrival to its ack: the pipeline decides, the outcome is recorded, a
//! retry is published (with a confirm) when the job waits, then the message is acked.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use lapin::message::Delivery;
use lapin::options::BasicRejectOptions;
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use super::Source;
use crate::acks::Acks;
use crate::death::Death;
use crate::pipeline::{BrokerDead, DB_RETRY, Decision, Pipeline, message_key};
use wxnotify_core::batch::DbError;
use wxnotify_core::domain::Job;
use wxnotify_core::queue::{Lane, Publisher};
use wxnotify_services::ledger::outcome::{DeadReason, Failure, Outcome};

/// Settles one delivery.
pub(super) struct Settle {
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) publisher: Publisher,
    /// The ack coalescer of the delivery's channel.
    pub(super) acks: Acks,
    pub(super) shutdown: CancellationToken,
}

impl Settle {
    /// The straight path of one delivery: the pipeline decides, `settle` records, then the
    /// message is acked (after publishing its retry, when it waits).
    pub(super) async fn handle(&self, source: Source, delivery: Delivery) {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned());
        let body = &delivery.data;
        let decision = match source {
            Source::Lane(lane) => {
                let Some(decision) = self
                    .until_db(|| self.pipeline.decide(lane, body, message_id.as_deref()))
                    .await
                else {
                    return; // shut down during a database outage: the broker redelivers it
                };
                decision
            }
            Source::BrokerDead => broker_dead(&delivery, message_id.as_deref()),
        };
        let Some(outcome) = self.until_db(|| self.pipeline.settle(&decision)).await else {
            return;
        };
        let app = decision
            .app()
            .filter(|app| self.pipeline.limits().app(app).is_some())
            .map_or("unconfigured", |app| app.as_str());
        self.pipeline.stats().count(app, &outcome);
        let wait = match &outcome {
            Outcome::Retry { delay, .. }
            | Outcome::Paused { delay, .. }
            | Outcome::Busy { delay } => Some(*delay),
            Outcome::Sent { .. }
            | Outcome::Duplicate
            | Outcome::HeldForReview { .. }
            | Outcome::RepeatedContent { .. }
            | Outcome::Dead { .. }
            | Outcome::Cancelled => None,
        };
        if let Some(delay) = wait {
            let (job, lane) = match &decision {
                Decision::Attempted(a) => (&a.job, a.lane),
                Decision::Busy { job, lane }
                | Decision::CampaignPaused { job, lane }
                | Decision::AppPaused { job, lane, .. } => (job, *lane),
                _ => unreachable!("only claimed or held jobs wait"),
            };
            if let Err(e) = self
                .schedule_retry(job, lane, delay, decision.attempt())
                .await
            {
                tracing::warn!(job_id = %job.id, error = %e, "retry could not be published; returning the message to its queue");
                let _ = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: true })
                    .await;
                self.acks.skip(delivery.delivery_tag);
                return;
            }
        }
        log_outcome(&decision, &outcome);
        self.acks.ack(delivery.delivery_tag);
    }

    /// Publishes the job (with its id fixed) to the retry tier that covers `delay`, trying a
    /// few times with backoff: a reject would count toward the delivery limit.
    async fn schedule_retry(
        &self,
        job: &Job,
        lane: Lane,
        delay: Duration,
        attempt: u32,
    ) -> anyhow::Result<()> {
        let body = job.to_json();
        let publish = || {
            self.publisher.publish_retry(
                &body,
                job.id.as_str(),
                lane,
                attempt + 1,
                delay,
                FieldTable::default(),
            )
        };
        publish
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_times(5)
                    .with_jitter(),
            )
            .await?;
        Ok(())
    }

    /// Runs `f` until Postgres answers, holding the message unacked meanwhile; `None` if the
    /// worker shuts down first.
    async fn until_db<T, F, Fut>(&self, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        loop {
            match f().await {
                Ok(v) => return Some(v),
                Err(e) if e.is_conflict() => {
                    // Postgres aborted the statement to break a deadlock (or a serialization
                    // conflict): nothing is wrong with Postgres; the statement is tried again.
                    tracing::info!(error = %e, "ledger write conflicted with another worker's; retrying it");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Postgres unavailable; holding the message and retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(DB_RETRY) => {}
                    }
                }
            }
        }
    }
}

/// The decision for a message RabbitMQ dead-lettered: classified by its last death (see
/// `death.rs`), keyed by its id, body and how often it died, so a redelivery from the dead queue
/// is recorded once.
fn broker_dead(delivery: &Delivery, message_id: Option<&str>) -> Decision {
    let body = &delivery.data;
    let death = Death::from_headers(delivery.properties.headers().as_ref());
    let broker_reason = death
        .as_ref()
        .map(|d| d.reason.clone())
        .unwrap_or_else(|| "unknown".into());
    let reason = death
        .as_ref()
        .map(Death::dead_reason)
        .unwrap_or(DeadReason::Rejected);
    let failure = Failure::local(format!(
        "RabbitMQ dead-lettered the message ({broker_reason}): it failed a worker too many times"
    ));
    let job = Job::from_json_with_fallback_id(body, message_id).ok();
    let lane = death
        .as_ref()
        .and_then(Death::lane)
        .or_else(|| {
            job.as_ref().map(|j| {
                if j.campaign_id.is_some() {
                    Lane::Bulk
                } else {
                    Lane::Jobs
                }
            })
        })
        .unwrap_or(Lane::Jobs);
    let count = death.as_ref().map(|d| d.count).unwrap_or(1);
    let key = format!("{}:{count}", message_key("broker", body, message_id));
    let raw = String::from_utf8_lossy(&body[..body.len().min(4096)]).replace('\0', "\u{fffd}");
    Decision::BrokerDead(BrokerDead {
        job,
        lane,
        reason,
        failure,
        key,
        raw,
    })
}

fn log_outcome(decision: &Decision, outcome: &Outcome) {
    let job_id = decision.job_id();
    match outcome {
        Outcome::Sent { msgid } => {
            tracing::debug!(job_id, attempt = decision.attempt(), msgid = ?msgid, "sent")
        }
        Outcome::Duplicate => {
            tracing::debug!(job_id, "duplicate: already finished, not sent again")
        }
        Outcome::Busy { delay } => tracing::debug!(
            job_id,
            retry_in_ms = delay.as_millis() as u64,
            "another delivery of this job id holds a live claim: waiting"
        ),
        Outcome::Cancelled => tracing::debug!(job_id, "campaign cancelled: not sent"),
        Outcome::HeldForReview { failure } => tracing::info!(
            job_id,
            errcode = failure.errcode,
            error = %failure.message,
            "held by WeChat for content review: not sent again; the review reconciliation ends it"
        ),
        Outcome::RepeatedContent { failure } => tracing::info!(
            job_id,
            errcode = failure.errcode,
            error = %failure.message,
            "duplicate: WeChat says an identical message went out within 60 s; not sent again"
        ),
        Outcome::Retry { delay, failure } | Outcome::Paused { delay, failure } => tracing::info!(
            job_id,
            attempt = decision.attempt(),
            retry_in_ms = delay.as_millis() as u64,
            errcode = failure.errcode,
            error = %failure.message,
            outcome = outcome.label(),
            "will retry"
        ),
        Outcome::Dead { reason, failure } => tracing::warn!(
            job_id,
            attempt = decision.attempt(),
            reason = reason.as_str(),
            errcode = failure.errcode,
            error = %failure.message,
            "dead-lettered"
        ),
    }
}
