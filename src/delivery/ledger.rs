//! The delivery ledger (`deliveries`, `delivery_attempts`, `dead_letters`): claim a job before
//! calling WeChat, record its outcome after, with conditional updates, never holding a
//! transaction or a connection across the call.

use serde_json::Value;
use sqlx::PgPool;

use super::outcome::{DeadReason, Failure};
use crate::domain::{Job, OpenId};
use crate::queue::Lane;

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The job is ours to send; this is attempt `attempt` (1-based).
    Attempt(u32),
    /// The job id was already sent or dead: do not send again.
    Duplicate,
}

/// Where a job is recorded.
#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
}

impl Ledger {
    /// A ledger on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Ledger { pool }
    }

    /// The pool, for callers that share it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims `job` for an attempt: creates its row, or counts one more attempt on a row that is
    /// not finished. A finished row (sent or dead) makes it a duplicate, counted on the row.
    #[tracing::instrument(skip_all, fields(job_id = %job.id), err)]
    pub async fn claim(&self, job: &Job, lane: Lane) -> Result<Claim, sqlx::Error> {
        let attempt: Option<i32> = sqlx::query_scalar(
            "INSERT INTO deliveries
                 (job_id, app, recipient_kind, recipient, template_id, campaign_id, lane, state, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'sending', 1)
             ON CONFLICT (job_id) DO UPDATE
                 SET attempts = deliveries.attempts + 1, state = 'sending', updated_at = now()
                 WHERE deliveries.state IN ('sending', 'retrying')
             RETURNING attempts",
        )
        .bind(job.id.as_str())
        .bind(job.app.as_str())
        .bind(job.to.kind())
        .bind(job.to.value())
        .bind(job.template_id.as_str())
        .bind(job.campaign_id)
        .bind(lane.routing_key())
        .fetch_optional(&self.pool)
        .await?;
        match attempt {
            Some(n) => Ok(Claim::Attempt(n.max(1) as u32)),
            None => {
                self.count_duplicate(job.id.as_str()).await?;
                Ok(Claim::Duplicate)
            }
        }
    }

    async fn count_duplicate(&self, job_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE deliveries SET duplicates = duplicates + 1 WHERE job_id = $1")
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives back an attempt that did not reach WeChat (the app was paused by 45009).
    pub async fn unclaim(&self, job_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE deliveries SET attempts = GREATEST(attempts - 1, 0), state = 'retrying', updated_at = now()
             WHERE job_id = $1 AND state = 'sending'",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a send WeChat accepted. Returns false if another delivery of the same job id
    /// recorded its outcome first (then this one counts as a duplicate).
    #[tracing::instrument(skip_all, fields(job_id), err)]
    pub async fn record_sent(
        &self,
        job_id: &str,
        attempt: u32,
        oa_openid: &OpenId,
        msgid: i64,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "WITH d AS (
                 UPDATE deliveries
                 SET state = 'sent', msgid = $2, oa_openid = $3, sent_at = now(), updated_at = now()
                 WHERE job_id = $1 AND state = 'sending'
                 RETURNING job_id)
             INSERT INTO delivery_attempts (job_id, attempt, outcome)
             SELECT job_id, $4, 'sent' FROM d
             ON CONFLICT (job_id, attempt) DO UPDATE SET outcome = 'sent', at = now()",
        )
        .bind(job_id)
        .bind(msgid)
        .bind(oa_openid.as_str())
        .bind(attempt as i32)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            self.count_duplicate(job_id).await?;
        }
        Ok(updated > 0)
    }

    /// Records a failed attempt that will be retried.
    pub async fn record_retry(
        &self,
        job_id: &str,
        attempt: u32,
        failure: &Failure,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "WITH d AS (
                 UPDATE deliveries
                 SET state = 'retrying', last_errcode = $3, last_errmsg = $4, updated_at = now()
                 WHERE job_id = $1 AND state = 'sending'
                 RETURNING job_id)
             INSERT INTO delivery_attempts (job_id, attempt, outcome, errcode, errmsg)
             SELECT job_id, $2, 'retry', $3, $4 FROM d
             ON CONFLICT (job_id, attempt) DO NOTHING",
        )
        .bind(job_id)
        .bind(attempt as i32)
        .bind(failure.errcode)
        .bind(&failure.message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a job's death: the ledger row (when the job parsed) and a dead letter with the
    /// original job (or raw bytes), the reason, the error and the attempt count, in one
    /// statement.
    pub async fn record_dead(&self, dead: &DeadLetter<'_>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "WITH d AS (
                 UPDATE deliveries
                 SET state = 'dead', dead_reason = $3, last_errcode = $4, last_errmsg = $5, updated_at = now()
                 WHERE job_id = $1 AND state IN ('sending', 'retrying')
                 RETURNING job_id),
             a AS (
                 INSERT INTO delivery_attempts (job_id, attempt, outcome, errcode, errmsg)
                 SELECT job_id, $8, 'dead', $4, $5 FROM d WHERE $8 > 0
                 ON CONFLICT (job_id, attempt) DO UPDATE SET outcome = 'dead'
                 RETURNING 1)
             INSERT INTO dead_letters (job_id, app, reason, errcode, errmsg, job, raw, attempts, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(dead.job_id)
        .bind(dead.app)
        .bind(dead.reason.as_str())
        .bind(dead.failure.errcode)
        .bind(&dead.failure.message)
        .bind(dead.job)
        .bind(dead.raw)
        .bind(dead.attempts as i32)
        .bind(dead.source)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Everything recorded about a dead job.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// The job id, when it could be read.
    pub job_id: Option<&'a str>,
    /// The app, when it could be read.
    pub app: Option<&'a str>,
    /// Why it died.
    pub reason: DeadReason,
    /// The last error.
    pub failure: &'a Failure,
    /// The job as JSON, when it parsed as JSON.
    pub job: Option<&'a Value>,
    /// The raw bytes as text, when it did not.
    pub raw: Option<&'a str>,
    /// Attempts made at WeChat.
    pub attempts: u32,
    /// `worker` or `broker`.
    pub source: &'static str,
}
