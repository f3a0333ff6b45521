//! Settling a decision: the one place where what the pipeline decided becomes ledger writes.
//!
//! [`Pipeline::settle`] takes the typed [`Decision`] (malformed, duplicate, held by a live twin,
//! attempted with its outcome, or dead-lettered by the broker) and writes it in one transaction
//! per outcome. It returns the final outcome, which tells the consumer what to do with the
//! message: ack it, or publish it to a retry tier (retry, pause, held) and then ack it. Every
//! write may be tried again after an error (the consumer does, while Postgres is away): a write
//! that committed but whose reply was lost is recognised as this claim's own, never as a
//! duplicate.

use super::pipeline::{Attempt, BrokerDead, Decision, Malformed, Pipeline};
use wxnotify_core::batch::DbError;
use wxnotify_core::wechat::errcode;
use wxnotify_services::ledger::outcome::{DeadReason, Failure, Outcome};
use wxnotify_services::ledger::{AnsweredState, DeadJob, MalformedLetter, RetryRecord, Written};

impl Pipeline {
    /// Records `decision` and returns the final outcome: an attempt that another delivery of
    /// the same job id finished or took over first becomes [`Outcome::Duplicate`].
    pub async fn settle(&self, decision: &Decision) -> Result<Outcome, DbError> {
        Ok(match decision {
            Decision::Malformed(m) => self.settle_malformed(m, "worker").await?,
            Decision::Duplicate { .. } => Outcome::Duplicate,
            Decision::Busy { .. } => Outcome::Busy {
                delay: self.retry().busy_wait,
            },
            Decision::CampaignPaused { job, .. } => Outcome::Paused {
                delay: self.retry().campaign_paused_wait,
                failure: Failure::local(format!(
                    "campaign {} is paused",
                    job.campaign_id.unwrap_or_default()
                )),
            },
            Decision::AppPaused { delay, failure, .. } => Outcome::Paused {
                delay: *delay,
                failure: failure.clone(),
            },
            Decision::Attempted(a) => self.settle_attempt(a).await?,
            Decision::BrokerDead(b) => self.settle_broker_dead(b).await?,
        })
    }

    async fn settle_malformed(
        &self,
        m: &Malformed,
        source: &'static str,
    ) -> Result<Outcome, DbError> {
        let written = self
            .ledger()
            .record_malformed(&MalformedLetter {
                job_id: m.job_id.as_deref(),
                reason: DeadReason::Malformed,
                error: &m.error,
                raw: &m.raw,
                source,
                key: &m.key,
            })
            .await?;
        if written == Written::Superseded {
            // The same message again: already a dead letter.
            return Ok(Outcome::Duplicate);
        }
        Ok(Outcome::dead(
            DeadReason::Malformed,
            wxnotify_services::ledger::outcome::Failure::local(m.error.clone()),
        ))
    }

    async fn settle_attempt(&self, a: &Attempt) -> Result<Outcome, DbError> {
        let ledger = self.ledger();
        let written = match &a.outcome {
            Outcome::Sent { msgid } => Written::from_recorded(
                ledger
                    .record_sent(&a.job, &a.claim, a.oa_openid.as_ref(), *msgid)
                    .await?,
            ),
            Outcome::Retry { failure, .. } => {
                ledger
                    .record_retry(&RetryRecord {
                        job: &a.job,
                        claim: &a.claim,
                        sent: a.sent,
                        uncertain: a.uncertain,
                        failure,
                    })
                    .await?
            }
            Outcome::Paused { .. } | Outcome::Busy { .. } => {
                ledger.unclaim(&a.job, &a.claim).await?
            }
            Outcome::HeldForReview { failure } | Outcome::RepeatedContent { failure } => {
                let state = match &a.outcome {
                    Outcome::HeldForReview { .. } => AnsweredState::Held,
                    _ => AnsweredState::Duplicate,
                };
                ledger
                    .record_answered(&a.job, &a.claim, a.oa_openid.as_ref(), state, failure)
                    .await?
            }
            Outcome::Dead { reason, failure } => {
                let key = format!("claim:{}", a.claim.id);
                let unsubscribe = (failure.errcode == Some(errcode::REQUIRE_SUBSCRIBE))
                    .then_some(a.oa_openid.as_ref())
                    .flatten();
                ledger
                    .record_dead(&DeadJob {
                        job: &a.job,
                        lane: a.lane,
                        claim: Some(a.claim.id),
                        sent: a.sent,
                        uncertain: a.uncertain,
                        reason: *reason,
                        failure,
                        source: "worker",
                        key: &key,
                        unsubscribe,
                    })
                    .await?
            }
            // The campaign gate recorded the cancellation itself.
            Outcome::Duplicate | Outcome::Cancelled => Written::Recorded,
        };
        Ok(match written {
            Written::Recorded => a.outcome.clone(),
            Written::Superseded => Outcome::Duplicate,
        })
    }

    async fn settle_broker_dead(&self, b: &BrokerDead) -> Result<Outcome, DbError> {
        let Some(job) = &b.job else {
            let written = self
                .ledger()
                .record_malformed(&MalformedLetter {
                    job_id: None,
                    reason: b.reason,
                    error: &b.failure.message,
                    raw: &b.raw,
                    source: "broker",
                    key: &b.key,
                })
                .await?;
            return Ok(match written {
                Written::Recorded => Outcome::dead(b.reason, b.failure.clone()),
                Written::Superseded => Outcome::Duplicate,
            });
        };
        let written = self
            .ledger()
            .record_dead(&DeadJob {
                job,
                lane: b.lane,
                claim: None,
                sent: false,
                uncertain: false,
                reason: b.reason,
                failure: &b.failure,
                source: "broker",
                key: &b.key,
                unsubscribe: None,
            })
            .await?;
        Ok(match written {
            Written::Recorded => Outcome::dead(b.reason, b.failure.clone()),
            Written::Superseded => Outcome::Duplicate,
        })
    }
}
