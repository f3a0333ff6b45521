//! The delivery ledger (`deliveries`, `delivery_attempts`, `dead_letters`): claim a job before
//! calling WeChat, record its outcome after, never holding a transaction or a connection across
//! the call. Each outcome is written in one transaction (one statement, or one explicit
//! transaction where several tables change), and every write can be tried again after a lost
//! reply: it recognises its own earlier commit by the claim id (or the dead letter's key), so a
//! committed write is never counted twice.
//!
//! A claim is a lease: the worker (its `workers.id`), a claim id, and until when. A second
//! delivery of a job whose claim is live is [`Admission::Held`] (it waits in a retry tier); a
//! claim whose lease ran out, or whose worker stopped heartbeating, is taken over — and since that
//! worker may have sent before it died, the job's outcome is then uncertain from the old claim's
//! time on. `attempts` counts sends made, never claims.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::batch::{Batcher, DbError};
use super::outcome::{DeadReason, Failure};
use super::resolve::Lookup;
use crate::domain::{Job, OpenId};
use crate::queue::Lane;

/// How long a claim holds a job against twins while its worker heartbeats: longer than a send
/// can take (rate-limit wait, token, HTTP timeout).
pub const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// A claim whose worker has not heartbeated for this long is taken over before its lease ends.
pub const CLAIM_HEARTBEAT_LAPSE: Duration = Duration::from_secs(5);

/// A live claim on a job: what the outcome is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// This claim's id (recognises its own writes).
    pub id: Uuid,
    /// The attempt number a send now would be (sends made so far + 1, across lives).
    pub attempt: u32,
    /// The same, counted within the current life (since the last `dlq replay`); the retry policy
    /// counts these.
    pub life_attempt: u32,
    /// The job's life (1, then +1 per replay).
    pub life: i32,
    /// When the claim was taken (Postgres time).
    pub claimed_at: DateTime<Utc>,
    /// When the job's outcome first became uncertain, if it did.
    pub uncertain_since: Option<DateTime<Utc>>,
}

/// What the claim of a job found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The job is ours to send; `lookup` is what Postgres knows about the recipient.
    Attempt {
        /// The claim.
        claim: Claim,
        /// The recipient look-up.
        lookup: Lookup,
    },
    /// Another delivery of the same job id holds a live claim: do not send; try again later.
    Held,
    /// The job id was already sent or dead: do not send again (counted on the row).
    Duplicate,
}

/// Whether a write of an outcome landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written now, or by this claim's earlier try whose reply was lost.
    Recorded,
    /// Another delivery of the job id finished it or took the claim over: nothing was written.
    Superseded,
}

impl Written {
    /// `Recorded` when `recorded`.
    pub fn from_recorded(recorded: bool) -> Self {
        if recorded {
            Written::Recorded
        } else {
            Written::Superseded
        }
    }
}

/// One job to claim.
#[derive(Debug, Clone)]
struct ClaimRequest {
    job_id: String,
    app: String,
    kind: &'static str,
    recipient: String,
    template_id: String,
    campaign_id: Option<Uuid>,
    lane: &'static str,
    claim_id: Uuid,
}

/// One accepted send to record.
#[derive(Debug, Clone)]
struct SentRequest {
    job_id: String,
    claim_id: Uuid,
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
    worker: Uuid,
    claims: Batcher<ClaimRequest, Admission>,
    sends: Batcher<SentRequest, bool>,
}

/// A failed attempt to record.
#[derive(Debug)]
pub struct RetryRecord<'a> {
    /// The job id.
    pub job_id: &'a str,
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
    /// A ledger on `pool` whose claims name a worker id of their own (they lapse with their
    /// lease only). Must be called inside a tokio runtime (it spawns the batchers).
    pub fn new(pool: PgPool) -> Self {
        Ledger::for_worker(pool, Uuid::new_v4())
    }

    /// A ledger whose claims name `worker`, the id this process heartbeats under in `workers`:
    /// its claims are taken over as soon as its heartbeat lapses.
    pub fn for_worker(pool: PgPool, worker: Uuid) -> Self {
        let claims = Batcher::spawn(MAX_BATCH, BATCHES_IN_FLIGHT, {
            let pool = pool.clone();
            move |reqs| claim_batch(pool.clone(), worker, reqs)
        });
        let sends = Batcher::spawn(MAX_BATCH, BATCHES_IN_FLIGHT, {
            let pool = pool.clone();
            move |reqs| sent_batch(pool.clone(), reqs)
        });
        Ledger {
            pool,
            worker,
            claims,
            sends,
        }
    }

    /// The pool, for callers that share it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The worker id claims are taken under.
    pub fn worker(&self) -> Uuid {
        self.worker
    }

    /// Claims `job` and looks its recipient up, in one (batched) statement: the row is created,
    /// or claimed when it waits for a retry or its old claim lapsed; a live claim makes it
    /// [`Admission::Held`], a finished row (sent or dead) a duplicate.
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
                claim_id: Uuid::new_v4(),
            })
            .await
    }

    /// Records a send WeChat accepted (batched; one attempt more). Returns false if another
    /// delivery of the same job id recorded it first (then this one is counted as a duplicate);
    /// true also when this claim's own earlier write committed and its reply was lost.
    pub async fn record_sent(
        &self,
        job_id: &str,
        claim: &Claim,
        oa_openid: &OpenId,
        msgid: i64,
    ) -> Result<bool, DbError> {
        self.sends
            .call(SentRequest {
                job_id: job_id.to_owned(),
                claim_id: claim.id,
                oa_openid: oa_openid.as_str().to_owned(),
                msgid,
            })
            .await
    }

    /// Gives the claim back without counting an attempt (the app was paused by 45009): the job
    /// waits for its retry.
    pub async fn unclaim(&self, job_id: &str, claim: &Claim) -> Result<Written, sqlx::Error> {
        let (written, own): (i64, Option<bool>) = sqlx::query_as(
            "WITH d AS (
                 UPDATE deliveries SET state = 'retrying', claimed_until = NULL, updated_at = now()
                 WHERE job_id = $1 AND state = 'sending' AND claim_id = $2
                 RETURNING 1)
             SELECT (SELECT count(*) FROM d),
                    (SELECT state = 'retrying' AND claim_id = $2 FROM deliveries WHERE job_id = $1)",
        )
        .bind(job_id)
        .bind(claim.id)
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
                 WHERE job_id = $1 AND state = 'sending' AND claim_id = $2
                 RETURNING job_id, attempts, life),
             a AS (
                 INSERT INTO delivery_attempts (job_id, attempt, outcome, errcode, errmsg, life)
                 SELECT job_id, attempts, 'retry', $4, $5, life FROM d WHERE $3
                 ON CONFLICT (job_id, attempt) DO NOTHING)
             SELECT (SELECT count(*) FROM d),
                    (SELECT state = 'retrying' AND claim_id = $2 FROM deliveries WHERE job_id = $1)",
        )
        .bind(r.job_id)
        .bind(r.claim.id)
        .bind(r.sent)
        .bind(r.failure.errcode)
        .bind(&r.failure.message)
        .bind(r.uncertain)
        .fetch_one(&self.pool)
        .await?;
        Ok(Written::from_recorded(written > 0 || own == Some(true)))
    }

    /// Records a job's death in one transaction: its ledger row turns dead (created dead if the
    /// job was never claimed), a dead letter keeps the job, the reason, the error and the attempt
    /// count, and (43004) the follower is marked unsubscribed through the followers store.
    ///
    /// With a claim only that claim may end the job; without one (the broker's dead letters) any
    /// unfinished row may. The dead letter's `key` recognises a write that already committed.
    pub async fn record_dead(&self, dead: &DeadJob<'_>) -> Result<Written, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let already: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM dead_letters WHERE dedupe_key = $1)")
                .bind(dead.key)
                .fetch_one(&mut *tx)
                .await?;
        if already {
            return Ok(Written::Recorded);
        }
        let job = dead.job;
        let row: Option<(i32, i32)> = sqlx::query_as(
            "INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, campaign_id,
                                     lane, state, attempts, dead_reason, last_errcode, last_errmsg)
             VALUES ($1, $2, $7, $8, $9, $10, $11, 'dead', 0, $3, $4, $5)
             ON CONFLICT (job_id) DO UPDATE
                 SET state = 'dead', dead_reason = $3, last_errcode = $4, last_errmsg = $5,
                     attempts = deliveries.attempts + CASE WHEN $12 THEN 1 ELSE 0 END,
                     uncertain_since = CASE WHEN $13 THEN COALESCE(deliveries.uncertain_since, deliveries.claimed_at, now())
                                            ELSE deliveries.uncertain_since END,
                     claimed_until = NULL, updated_at = now()
                 WHERE deliveries.state IN ('sending', 'retrying')
                   AND ($6::uuid IS NULL OR deliveries.claim_id = $6)
             RETURNING attempts, life",
        )
        .bind(job.id.as_str())
        .bind(job.app.as_str())
        .bind(dead.reason.as_str())
        .bind(dead.failure.errcode)
        .bind(&dead.failure.message)
        .bind(dead.claim)
        .bind(job.to.kind())
        .bind(job.to.value())
        .bind(job.template_id.as_str())
        .bind(job.campaign_id)
        .bind(dead.lane.routing_key())
        .bind(dead.sent)
        .bind(dead.uncertain)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((attempts, life)) = row else {
            return Ok(Written::Superseded);
        };
        if dead.sent {
            sqlx::query(
                "INSERT INTO delivery_attempts (job_id, attempt, outcome, errcode, errmsg, life)
                 VALUES ($1, $2, 'dead', $3, $4, $5)
                 ON CONFLICT (job_id, attempt) DO UPDATE SET outcome = 'dead'",
            )
            .bind(job.id.as_str())
            .bind(attempts)
            .bind(dead.failure.errcode)
            .bind(&dead.failure.message)
            .bind(life)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO dead_letters (job_id, app, reason, errcode, errmsg, job, attempts, source, life, dedupe_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(job.id.as_str())
        .bind(job.app.as_str())
        .bind(dead.reason.as_str())
        .bind(dead.failure.errcode)
        .bind(&dead.failure.message)
        .bind(dead.json)
        .bind(attempts)
        .bind(dead.source)
        .bind(life)
        .bind(dead.key)
        .execute(&mut *tx)
        .await?;
        if let Some(openid) = dead.unsubscribe {
            crate::followers::store::mark_unsubscribed(&mut tx, &job.app, openid).await?;
        }
        tx.commit().await?;
        Ok(Written::Recorded)
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
    /// The job as JSON.
    pub json: Option<&'a Value>,
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
    /// Set when this statement claimed the row.
    attempts: Option<i32>,
    life: Option<i32>,
    life_attempts_base: Option<i32>,
    claimed_at: Option<DateTime<Utc>>,
    uncertain_since: Option<DateTime<Utc>>,
    /// The row's state before the statement, when it was not claimed (`None`: not visible).
    prior_state: Option<String>,
    #[sqlx(flatten)]
    lookup: Lookup,
}

/// Claims a batch and looks its recipients up: one statement per round.
async fn claim_batch(
    pool: PgPool,
    worker: Uuid,
    reqs: Vec<ClaimRequest>,
) -> Result<Vec<Admission>, sqlx::Error> {
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
            .bind(reqs.iter().map(|r| r.claim_id).collect::<Vec<_>>())
            .bind(worker)
            .bind(CLAIM_LEASE.as_secs_f64())
            .bind(CLAIM_HEARTBEAT_LAPSE.as_secs_f64())
            .fetch_all(&pool)
            .await?;
        let mut duplicates = Vec::new();
        for row in rows {
            let Some(pos) = reqs.iter().position(|r| r.job_id == row.job_id) else {
                continue;
            };
            out[idx[pos]] = Some(match (row.attempts, row.claimed_at) {
                (Some(attempts), Some(claimed_at)) => {
                    let attempts = attempts.max(0) as u32;
                    let base = row.life_attempts_base.unwrap_or(0).max(0) as u32;
                    Admission::Attempt {
                        claim: Claim {
                            id: reqs[pos].claim_id,
                            attempt: attempts + 1,
                            life_attempt: attempts.saturating_sub(base) + 1,
                            life: row.life.unwrap_or(1),
                            claimed_at,
                            uncertain_since: row.uncertain_since,
                        },
                        lookup: row.lookup,
                    }
                }
                _ if matches!(row.prior_state.as_deref(), Some("sent" | "dead")) => {
                    duplicates.push(row.job_id);
                    Admission::Duplicate
                }
                // A live claim, or a row committed by another statement meanwhile.
                _ => Admission::Held,
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
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::uuid[])
        AS t(job_id, app, kind, recipient, template_id, campaign_id, lane, claim_id)
),
claimed AS (
    INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, campaign_id, lane, state, attempts,
                            claim_id, claimed_by, claimed_at, claimed_until)
    SELECT job_id, app, kind, recipient, template_id, campaign_id, lane, 'sending', 0,
           claim_id, $9, now(), now() + make_interval(secs => $10) FROM input
    ON CONFLICT (job_id) DO UPDATE
        SET state = 'sending', claim_id = EXCLUDED.claim_id, claimed_by = $9, claimed_at = now(),
            claimed_until = EXCLUDED.claimed_until, updated_at = now(),
            -- Taking over a lapsed claim: its worker may have sent before it died.
            uncertain_since = CASE WHEN deliveries.state = 'sending'
                                   THEN COALESCE(deliveries.uncertain_since, deliveries.claimed_at, deliveries.updated_at)
                                   ELSE deliveries.uncertain_since END
        WHERE deliveries.state = 'retrying'
           OR (deliveries.state = 'sending'
               AND (deliveries.claimed_until IS NULL OR deliveries.claimed_until < now()
                    OR NOT EXISTS (SELECT 1 FROM workers w
                                   WHERE w.id = deliveries.claimed_by
                                     AND w.heartbeat_at > now() - make_interval(secs => $11))))
    RETURNING job_id, attempts, life, life_attempts_base, claimed_at, uncertain_since
)
SELECT i.job_id, c.attempts, c.life, c.life_attempts_base, c.claimed_at, c.uncertain_since,
       p.state AS prior_state,
       (i.kind <> 'mp_openid' OR m.mp_openid IS NOT NULL) AS mp_known,
       CASE i.kind WHEN 'mp_openid' THEN m.unionid WHEN 'unionid' THEN i.recipient END AS unionid,
       COALESCE(fo.oa_openid, fs.oa_openid) AS subscribed_openid,
       (fo.any_follower IS NOT NULL OR fa.any_follower IS NOT NULL) AS any_follower
FROM input i
LEFT JOIN claimed c USING (job_id)
LEFT JOIN deliveries p ON c.job_id IS NULL AND p.job_id = i.job_id
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
        // A sent job is sent, whoever holds the claim now; a row already sent by this very claim
        // is this claim's own earlier write whose reply was lost.
        let updated: Vec<String> = sqlx::query_scalar(
            "WITH t AS (
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::uuid[])
                     AS t(job_id, oa_openid, msgid, claim_id)),
             u AS (
                 UPDATE deliveries d
                 SET state = 'sent', msgid = t.msgid, oa_openid = t.oa_openid, sent_at = now(), updated_at = now(),
                     attempts = d.attempts + 1, claimed_until = NULL,
                     -- WeChat's receipt can arrive on the callback before the msgid is recorded.
                     (receipt_status, receipt_at) = (
                         SELECT r.status, r.reported_at FROM delivery_receipts r
                         WHERE r.app = d.app AND r.msgid = t.msgid)
                 FROM t
                 WHERE d.job_id = t.job_id AND d.state IN ('sending', 'retrying')
                 RETURNING d.job_id)
             SELECT job_id FROM u
             UNION ALL
             SELECT d.job_id FROM deliveries d JOIN t USING (job_id)
             WHERE d.state = 'sent' AND d.claim_id = t.claim_id",
        )
        .bind(reqs.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.oa_openid.as_str()).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.msgid).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.claim_id).collect::<Vec<_>>())
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
