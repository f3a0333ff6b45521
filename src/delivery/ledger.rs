//! The delivery ledger (`deliveries`, `delivery_attempts`, `dead_letters`): claim a job before
//! calling WeChat, record its outcome after, with conditional updates, never holding a
//! transaction or a connection across the call. `delivery_attempts` keeps every failed attempt
//! (and the final one of a dead job); a successful attempt is the `deliveries` row itself.

use std::collections::HashSet;

use serde_json::Value;
use sqlx::PgPool;

use super::batch::{Batcher, DbError};
use super::outcome::{DeadReason, Failure};
use super::resolve::Lookup;
use crate::domain::{Job, OpenId};
use crate::queue::Lane;

/// What the claim of a job found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The job is ours to send; this is attempt `attempt` (1-based); `lookup` is what Postgres
    /// knows about the recipient.
    Attempt {
        /// 1-based attempt number.
        attempt: u32,
        /// The recipient look-up.
        lookup: Lookup,
    },
    /// The job id was already sent or dead: do not send again (counted on the row).
    Duplicate,
}

/// One job to claim.
#[derive(Debug, Clone)]
struct ClaimRequest {
    job_id: String,
    app: String,
    kind: &'static str,
    recipient: String,
    template_id: String,
    campaign_id: Option<uuid::Uuid>,
    lane: &'static str,
}

/// One accepted send to record.
#[derive(Debug, Clone)]
struct SentRequest {
    job_id: String,
    oa_openid: String,
    msgid: i64,
}

/// Most rows written by one batched statement.
const MAX_BATCH: usize = 256;
/// Batched statements of one kind running at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// Where a job is recorded. Claims and sends of concurrent deliveries are batched into one
/// statement each (see `batch.rs`); rarer writes run alone.
#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
    claims: Batcher<ClaimRequest, Admission>,
    sends: Batcher<SentRequest, bool>,
}

impl Ledger {
    /// A ledger on `pool`. Must be called inside a tokio runtime (it spawns the batchers).
    pub fn new(pool: PgPool) -> Self {
        let claims = Batcher::spawn(MAX_BATCH, BATCHES_IN_FLIGHT, {
            let pool = pool.clone();
            move |reqs| claim_batch(pool.clone(), reqs)
        });
        let sends = Batcher::spawn(MAX_BATCH, BATCHES_IN_FLIGHT, {
            let pool = pool.clone();
            move |reqs| sent_batch(pool.clone(), reqs)
        });
        Ledger {
            pool,
            claims,
            sends,
        }
    }

    /// The pool, for callers that share it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims `job` for an attempt and looks its recipient up, in one (batched) statement: the
    /// row is created, or one more attempt is counted on a row that is not finished; a finished
    /// row (sent or dead) makes it a duplicate.
    pub async fn claim(&self, job: &Job, lane: Lane) -> Result<Admission, DbError> {
        self.claims
            .call(ClaimRequest {
                job_id: job.id.as_str().to_owned(),
                app: job.app.as_str().to_owned(),
                kind: job.to.kind(),
                recipient: job.to.value().to_owned(),
                template_id: job.template_id.as_str().to_owned(),
                campaign_id: job.campaign_id,
                lane: lane.routing_key(),
            })
            .await
    }

    /// Records a send WeChat accepted (batched). Returns false if another delivery of the same
    /// job id recorded its outcome first (then this one is counted as a duplicate).
    pub async fn record_sent(
        &self,
        job_id: &str,
        oa_openid: &OpenId,
        msgid: i64,
    ) -> Result<bool, DbError> {
        self.sends
            .call(SentRequest {
                job_id: job_id.to_owned(),
                oa_openid: oa_openid.as_str().to_owned(),
                msgid,
            })
            .await
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

    /// Records a job's death: its ledger row turns dead (created dead if the job was never
    /// claimed) and a dead letter keeps the job, the reason, the error and the attempt count — in
    /// one statement. Returns false, writing nothing, when the row was already sent or dead (a
    /// twin delivery of the same job id finished first: this one is a duplicate).
    pub async fn record_dead(
        &self,
        dead: &DeadLetter<'_>,
        job: &Job,
        lane: Lane,
    ) -> Result<bool, sqlx::Error> {
        let written: i64 = sqlx::query_scalar(
            "WITH d AS (
                 INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, campaign_id,
                                         lane, state, attempts, dead_reason, last_errcode, last_errmsg)
                 VALUES ($1, $2, $9, $10, $11, $12, $13, 'dead', $7, $3, $4, $5)
                 ON CONFLICT (job_id) DO UPDATE
                     SET state = 'dead', dead_reason = $3, last_errcode = $4, last_errmsg = $5, updated_at = now()
                     WHERE deliveries.state IN ('sending', 'retrying')
                 RETURNING job_id),
             a AS (
                 INSERT INTO delivery_attempts (job_id, attempt, outcome, errcode, errmsg)
                 SELECT job_id, $7, 'dead', $4, $5 FROM d WHERE $7 > 0
                 ON CONFLICT (job_id, attempt) DO UPDATE SET outcome = 'dead'
                 RETURNING 1),
             l AS (
                 INSERT INTO dead_letters (job_id, app, reason, errcode, errmsg, job, attempts, source)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM d
                 RETURNING 1)
             SELECT count(*) FROM l",
        )
        .bind(job.id.as_str())
        .bind(job.app.as_str())
        .bind(dead.reason.as_str())
        .bind(dead.failure.errcode)
        .bind(&dead.failure.message)
        .bind(dead.job)
        .bind(dead.attempts as i32)
        .bind(dead.source)
        .bind(job.to.kind())
        .bind(job.to.value())
        .bind(job.template_id.as_str())
        .bind(job.campaign_id)
        .bind(lane.routing_key())
        .fetch_one(&self.pool)
        .await?;
        Ok(written > 0)
    }

    /// Records a message that is not a job: a dead letter with its raw text (there is no ledger
    /// row: without a valid job there is no job id to keep one under).
    pub async fn record_malformed(&self, dead: &DeadLetter<'_>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO dead_letters (job_id, reason, errcode, errmsg, raw, attempts, source)
             VALUES ($1, $2, $3, $4, $5, 0, $6)",
        )
        .bind(dead.job_id)
        .bind(dead.reason.as_str())
        .bind(dead.failure.errcode)
        .bind(&dead.failure.message)
        .bind(dead.raw)
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

/// Splits requests into rounds in which no job id appears twice (one statement cannot claim the
/// same row twice), keeping each request's position.
fn rounds<T>(reqs: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<Vec<(usize, T)>> {
    /// The job ids of a round, and its requests with their positions.
    type Round<T> = (HashSet<String>, Vec<(usize, T)>);
    let mut rounds: Vec<Round<T>> = Vec::new();
    for (i, req) in reqs.into_iter().enumerate() {
        let k = key(&req).to_owned();
        match rounds.iter_mut().find(|(seen, _)| !seen.contains(&k)) {
            Some((seen, round)) => {
                seen.insert(k);
                round.push((i, req));
            }
            None => rounds.push((HashSet::from([k]), vec![(i, req)])),
        }
    }
    rounds.into_iter().map(|(_, r)| r).collect()
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    job_id: String,
    attempts: Option<i32>,
    #[sqlx(flatten)]
    lookup: Lookup,
}

/// Claims a batch and looks its recipients up: one statement per round.
async fn claim_batch(pool: PgPool, reqs: Vec<ClaimRequest>) -> Result<Vec<Admission>, sqlx::Error> {
    let n = reqs.len();
    let mut out: Vec<Option<Admission>> = vec![None; n];
    for round in rounds(reqs, |r| &r.job_id) {
        let (idx, reqs): (Vec<usize>, Vec<ClaimRequest>) = round.into_iter().unzip();
        let col = |f: fn(&ClaimRequest) -> &str| reqs.iter().map(f).collect::<Vec<&str>>();
        let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM_SQL)
            .bind(col(|r| &r.job_id))
            .bind(col(|r| &r.app))
            .bind(col(|r| r.kind))
            .bind(col(|r| &r.recipient))
            .bind(col(|r| &r.template_id))
            .bind(reqs.iter().map(|r| r.campaign_id).collect::<Vec<_>>())
            .bind(col(|r| r.lane))
            .fetch_all(&pool)
            .await?;
        let mut duplicates = Vec::new();
        for row in rows {
            let Some(pos) = reqs.iter().position(|r| r.job_id == row.job_id) else {
                continue;
            };
            out[idx[pos]] = Some(match row.attempts {
                Some(a) => Admission::Attempt {
                    attempt: a.max(1) as u32,
                    lookup: row.lookup,
                },
                None => {
                    duplicates.push(row.job_id);
                    Admission::Duplicate
                }
            });
        }
        if !duplicates.is_empty() {
            sqlx::query("UPDATE deliveries SET duplicates = duplicates + 1 WHERE job_id = ANY($1)")
                .bind(&duplicates)
                .execute(&pool)
                .await?;
        }
    }
    out.into_iter()
        .map(|a| {
            a.ok_or_else(|| {
                sqlx::Error::Protocol("a claimed job is missing from the answer".into())
            })
        })
        .collect()
}

/// The claim and the recipient look-up of a batch. The look-ups use the primary keys of
/// `mp_users` and `oa_followers` and the `oa_followers_unionid` index.
const CLAIM_SQL: &str = "
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::text[])
        AS t(job_id, app, kind, recipient, template_id, campaign_id, lane)
),
claimed AS (
    INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, campaign_id, lane, state, attempts)
    SELECT job_id, app, kind, recipient, template_id, campaign_id, lane, 'sending', 1 FROM input
    ON CONFLICT (job_id) DO UPDATE
        SET attempts = deliveries.attempts + 1, state = 'sending', updated_at = now()
        WHERE deliveries.state IN ('sending', 'retrying')
    RETURNING job_id, attempts
)
SELECT i.job_id, c.attempts,
       (i.kind <> 'mp_openid' OR m.mp_openid IS NOT NULL) AS mp_known,
       CASE i.kind WHEN 'mp_openid' THEN m.unionid WHEN 'unionid' THEN i.recipient END AS unionid,
       COALESCE(fo.oa_openid, fs.oa_openid) AS subscribed_openid,
       (fo.any_follower IS NOT NULL OR fa.any_follower IS NOT NULL) AS any_follower
FROM input i
LEFT JOIN claimed c USING (job_id)
LEFT JOIN mp_users m ON i.kind = 'mp_openid' AND m.app = i.app AND m.mp_openid = i.recipient
LEFT JOIN LATERAL (
    SELECT CASE WHEN f.subscribed THEN f.oa_openid END AS oa_openid, true AS any_follower
    FROM oa_followers f
    WHERE i.kind = 'oa_openid' AND f.app = i.app AND f.oa_openid = i.recipient
) fo ON true
LEFT JOIN LATERAL (
    SELECT f.oa_openid FROM oa_followers f
    WHERE i.kind <> 'oa_openid' AND f.app = i.app AND f.subscribed
      AND f.unionid = CASE i.kind WHEN 'mp_openid' THEN m.unionid ELSE i.recipient END
    ORDER BY f.updated_at DESC LIMIT 1
) fs ON true
LEFT JOIN LATERAL (
    SELECT true AS any_follower FROM oa_followers f
    WHERE i.kind <> 'oa_openid' AND f.app = i.app
      AND f.unionid = CASE i.kind WHEN 'mp_openid' THEN m.unionid ELSE i.recipient END
    LIMIT 1
) fa ON true";

/// Records a batch of accepted sends; `false` for a job another delivery recorded first.
async fn sent_batch(pool: PgPool, reqs: Vec<SentRequest>) -> Result<Vec<bool>, sqlx::Error> {
    let mut out = vec![false; reqs.len()];
    for round in rounds(reqs, |r| &r.job_id) {
        let (idx, reqs): (Vec<usize>, Vec<SentRequest>) = round.into_iter().unzip();
        let updated: Vec<String> = sqlx::query_scalar(
            "UPDATE deliveries d
             SET state = 'sent', msgid = t.msgid, oa_openid = t.oa_openid, sent_at = now(), updated_at = now(),
                 -- WeChat's receipt can arrive on the callback before the msgid is recorded.
                 (receipt_status, receipt_at) = (
                     SELECT r.status, r.reported_at FROM delivery_receipts r
                     WHERE r.app = d.app AND r.msgid = t.msgid)
             FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS t(job_id, oa_openid, msgid)
             WHERE d.job_id = t.job_id AND d.state = 'sending'
             RETURNING d.job_id",
        )
        .bind(reqs.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.oa_openid.as_str()).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.msgid).collect::<Vec<_>>())
        .fetch_all(&pool)
        .await?;
        let updated: HashSet<String> = updated.into_iter().collect();
        let mut lost = Vec::new();
        for (i, r) in idx.into_iter().zip(&reqs) {
            out[i] = updated.contains(&r.job_id);
            if !out[i] {
                lost.push(r.job_id.clone());
            }
        }
        if !lost.is_empty() {
            sqlx::query("UPDATE deliveries SET duplicates = duplicates + 1 WHERE job_id = ANY($1)")
                .bind(&lost)
                .execute(&pool)
                .await?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_never_repeat_a_job_id() {
        let r = rounds(vec!["a", "b", "a", "c", "a"], |s| s);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(r[1].iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2]);
    }
}
