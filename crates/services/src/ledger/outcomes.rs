//! The rarer writes, each alone in one statement: a claim given back, a failed attempt to
//! retry, an answer that is neither sent nor dead, a message that is not a job; and what a death
//! records ([`DeadJob`], written in batches by [`deaths`](super::deaths)).

use uuid::Uuid;

use super::{Claim, Ledger, Written};
use crate::ledger::outcome::{DeadReason, Failure};
use wxnotify_core::domain::{Job, OpenId};
use wxnotify_core::queue::Lane;

/// A failed attempt to record.
#[derive(Debug)]
pub struct RetryRecord<'a> {
    /// The job (its dead letter keeps it as JSON).
    pub job: &'a Job,
    /// The claim the attempt ran under.
    pub claim: &'a Claim,
    /// Whether a send was made (it counts as an attempt).
    pub sent: bool,
    /// Whether the send may have reached the person (no answer came).
    pub uncertain: bool,
    /// What failed.
    pub failure: &'a Failure,
}

impl Ledger {
    /// Gives the claim back without counting an attempt (the app was paused by 45009): the job
    /// waits for its retry.
    pub async fn unclaim(&self, job: &Job, claim: &Claim) -> Result<Written, sqlx::Error> {
        let (written, own): (i64, Option<bool>) = sqlx::query_as(
            "WITH d AS (
                 UPDATE deliveries SET state = 'retrying', claimed_until = NULL, updated_at = now()
                 WHERE app = $3 AND job_id = $1 AND state = 'sending' AND claim_id = $2
                 RETURNING 1)
             SELECT (SELECT count(*) FROM d),
                    (SELECT state = 'retrying' AND claim_id = $2 FROM deliveries
                     WHERE app = $3 AND job_id = $1)",
        )
        .bind(job.id.as_str())
        .bind(claim.id)
        .bind(job.app.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(Written::from_recorded(written > 0 || own == Some(true)))
    }

    /// Records a failed attempt that will be retried, in one statement: the row waits for its
    /// retry, the attempt (when a send was made) is counted and kept in the history, and an
    /// uncertain send marks when the outcome became uncertain.
    pub async fn record_retry(&self, r: &RetryRecord<'_>) -> Result<Written, sqlx::Error> {
        let (written, own): (i64, Option<bool>) = sqlx::query_as(
            "WITH d AS (
                 UPDATE deliveries
                 SET state = 'retrying', last_errcode = $4, last_errmsg = $5, updated_at = now(),
                     attempts = attempts + CASE WHEN $3 THEN 1 ELSE 0 END,
                     uncertain_since = CASE WHEN $6 THEN COALESCE(uncertain_since, claimed_at, now())
                                            ELSE uncertain_since END,
                     claimed_until = NULL
                 WHERE app = $7 AND job_id = $1 AND state = 'sending' AND claim_id = $2
                 RETURNING app, job_id, attempts, life),
             a AS (
                 INSERT INTO delivery_attempts (app, job_id, attempt, outcome, errcode, errmsg, life)
                 SELECT app, job_id, attempts, 'retry', $4, $5, life FROM d WHERE $3
                 ON CONFLICT (app, job_id, attempt) DO NOTHING)
             SELECT (SELECT count(*) FROM d),
                    (SELECT state = 'retrying' AND claim_id = $2 FROM deliveries
                     WHERE app = $7 AND job_id = $1)",
        )
        .bind(r.job.id.as_str())
        .bind(r.claim.id)
        .bind(r.sent)
        .bind(r.failure.errcode)
        .bind(&r.failure.message)
        .bind(r.uncertain)
        .bind(r.job.app.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(Written::from_recorded(written > 0 || own == Some(true)))
    }

    /// Records a send WeChat answered with a final state other than sent or dead, in one
    /// statement: `held` (40252, in review: `held_at` is set and the job is kept in
    /// `review_holds` for the reconciliation) or `duplicate` (40241). The send counts as an
    /// attempt and is kept in the history with WeChat's answer.
    pub async fn record_answered(
        &self,
        job: &Job,
        claim: &Claim,
        oa_openid: Option<&OpenId>,
        state: AnsweredState,
        failure: &Failure,
    ) -> Result<Written, sqlx::Error> {
        let kept = (state == AnsweredState::Held)
            .then(|| serde_json::to_value(job).ok())
            .flatten();
        let state = state.as_str();
        let (written, own): (i64, Option<bool>) = sqlx::query_as(
            "WITH d AS (
                 UPDATE deliveries
                 SET state = $3, last_errcode = $4, last_errmsg = $5, updated_at = now(),
                     attempts = attempts + 1, claimed_until = NULL, oa_openid = $7,
                     channel = COALESCE(channel, 'oa_template'),
                     held_at = CASE WHEN $3 = 'held' THEN now() ELSE held_at END
                 WHERE app = $8 AND job_id = $1 AND state = 'sending' AND claim_id = $2
                 RETURNING app, job_id, attempts, life),
             a AS (
                 INSERT INTO delivery_attempts (app, job_id, attempt, outcome, errcode, errmsg, life)
                 SELECT app, job_id, attempts, $3, $4, $5, life FROM d
                 ON CONFLICT (app, job_id, attempt) DO NOTHING),
             h AS (
                 INSERT INTO review_holds (app, job_id, job)
                 SELECT app, job_id, $6 FROM d WHERE $6::jsonb IS NOT NULL
                 ON CONFLICT (app, job_id) DO UPDATE
                     SET job = EXCLUDED.job, held_at = now(), decided_at = NULL)
             SELECT (SELECT count(*) FROM d),
                    (SELECT state = $3 AND claim_id = $2 FROM deliveries
                     WHERE app = $8 AND job_id = $1)",
        )
        .bind(job.id.as_str())
        .bind(claim.id)
        .bind(state)
        .bind(failure.errcode)
        .bind(&failure.message)
        .bind(kept)
        .bind(oa_openid.map(OpenId::as_str))
        .bind(job.app.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(Written::from_recorded(written > 0 || own == Some(true)))
    }

    /// Records a message that is not a job: a dead letter with its raw text (no ledger row:
    /// without a valid job there is no job id to keep one under). A redelivery of a message
    /// already recorded finds its key and writes nothing: [`Written::Superseded`].
    pub async fn record_malformed(&self, m: &MalformedLetter<'_>) -> Result<Written, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO dead_letters (job_id, reason, errcode, errmsg, raw, attempts, source, dedupe_key)
             VALUES ($1, $2, NULL, $3, $4, 0, $5, $6)
             ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
        )
        .bind(m.job_id)
        .bind(m.reason.as_str())
        .bind(m.error)
        .bind(m.raw)
        .bind(m.source)
        .bind(m.key)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(Written::from_recorded(inserted > 0))
    }
}

/// The final states of a send that WeChat answered without accepting or refusing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredState {
    /// 40252: in WeChat's content review.
    Held,
    /// 40241: an identical message went out within 60 seconds.
    Duplicate,
}

impl AnsweredState {
    /// The ledger's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredState::Held => "held",
            AnsweredState::Duplicate => "duplicate",
        }
    }
}

/// Everything recorded about a dead job.
#[derive(Debug)]
pub struct DeadJob<'a> {
    /// The job.
    pub job: &'a Job,
    /// Its lane (for a row created dead).
    pub lane: Lane,
    /// The claim that ends it (`None`: the broker's dead letter, no claim).
    pub claim: Option<Uuid>,
    /// Whether a send was made in this attempt (it counts).
    pub sent: bool,
    /// Whether that send may have reached the person though no answer said so.
    pub uncertain: bool,
    /// Why it died.
    pub reason: DeadReason,
    /// The last error.
    pub failure: &'a Failure,
    /// `worker` or `broker`.
    pub source: &'static str,
    /// The dead letter's key (one dead letter per key).
    pub key: &'a str,
    /// Mark this follower unsubscribed in the same transaction (43004).
    pub unsubscribe: Option<&'a OpenId>,
}

/// A message that is not a job.
#[derive(Debug)]
pub struct MalformedLetter<'a> {
    /// The job id, when one could be read.
    pub job_id: Option<&'a str>,
    /// Why (always `malformed` for now).
    pub reason: DeadReason,
    /// What is wrong with it.
    pub error: &'a str,
    /// The raw bytes as text (truncated).
    pub raw: &'a str,
    /// `worker` or `broker`.
    pub source: &'static str,
    /// The key that recognises a redelivery of the same message.
    pub key: &'a str,
}
