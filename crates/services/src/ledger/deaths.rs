//! Recording deaths: batched like the claims and the sends, one statement per round.
//!
//! A death is no rare write: every job to a person no channel reaches ends here, and a campaign
//! to a list that is a sixth strangers dies a sixth of its jobs. Written alone, each death would
//! be a transaction of four round trips and a commit of its own, and a worker whose jobs die in
//! numbers would spend its connections waiting on them. Batched, the deaths of a moment share
//! one statement and one commit.
//!
//! One statement per round: the rows with a claim are locked in (app, job id) order and turned
//! dead (only by that claim, and only while sending or waiting for a retry); the rows without
//! (the broker's dead letters) are created dead or turned dead; each gets its dead letter, and a
//! send made in the attempt is kept in the history. A job whose dead letter's key is already
//! stored was recorded by this same death's earlier try whose reply was lost. A death that marks
//! a follower unsubscribed (43004) runs with that mark in one transaction.

use std::collections::HashSet;

use sqlx::PgPool;
use uuid::Uuid;

use super::outcomes::DeadJob;
use super::{Ledger, NewRow, Written, rounds};
use wxnotify_core::batch::DbError;

/// One death to record, owned (it waits in the batcher).
#[derive(Debug, Clone)]
pub(super) struct DeadRequest {
    row: NewRow,
    claim_id: Option<Uuid>,
    sent: bool,
    uncertain: bool,
    reason: &'static str,
    errcode: Option<i64>,
    errmsg: String,
    /// The job as JSON text (stored as `jsonb`).
    job: String,
    source: &'static str,
    key: String,
    unsubscribe: Option<String>,
}

impl DeadRequest {
    fn of(dead: &DeadJob<'_>) -> DeadRequest {
        let job = dead.job;
        debug_assert!(
            dead.claim.is_some() || !(dead.sent || dead.uncertain),
            "a send is made under a claim"
        );
        DeadRequest {
            row: NewRow::of(job, dead.lane),
            claim_id: dead.claim,
            sent: dead.sent,
            uncertain: dead.uncertain,
            reason: dead.reason.as_str(),
            errcode: dead.failure.errcode,
            errmsg: dead.failure.message.clone(),
            job: serde_json::to_string(job).expect("a job serializes"),
            source: dead.source,
            key: dead.key.to_owned(),
            unsubscribe: dead.unsubscribe.map(|o| o.as_str().to_owned()),
        }
    }
}

/// What the batcher answers each death: its own result, so that a row Postgres refuses fails
/// only its own job, not the deaths batched with it.
pub(super) type DeathResult = Result<Written, DbError>;

impl Ledger {
    /// Records a job's death (batched): its ledger row turns dead (created dead if the job was
    /// never claimed), a dead letter keeps the job, the reason, the error and the attempt count,
    /// and (43004) the follower is marked unsubscribed in the same transaction.
    ///
    /// With a claim only that claim may end the job; without one (the broker's dead letters) any
    /// unfinished row may. The dead letter's `key` recognises a write that already committed.
    pub async fn record_dead(&self, dead: &DeadJob<'_>) -> Result<Written, DbError> {
        self.deaths.call(DeadRequest::of(dead)).await?
    }
}

/// Records a batch of deaths, one statement per round. When Postgres refuses the statement
/// itself (not a lost connection or a conflict), each death is tried alone, so that one row it
/// cannot store holds back only its own job.
pub(super) async fn dead_batch(
    pool: PgPool,
    reqs: Vec<DeadRequest>,
) -> Result<Vec<DeathResult>, sqlx::Error> {
    let mut out: Vec<Option<DeathResult>> = vec![None; reqs.len()];
    for round in rounds(reqs, |r| r.row.key()) {
        let (idx, reqs): (Vec<usize>, Vec<DeadRequest>) = round.into_iter().unzip();
        match write_round(&pool, &reqs).await {
            Ok(written) => {
                for (i, w) in idx.into_iter().zip(written) {
                    out[i] = Some(Ok(w));
                }
            }
            Err(e) if refused_statement(&e) && reqs.len() > 1 => {
                for (i, req) in idx.into_iter().zip(reqs) {
                    out[i] = Some(match write_round(&pool, std::slice::from_ref(&req)).await {
                        Ok(mut w) => Ok(w.remove(0)),
                        Err(e) if refused_statement(&e) => Err(DbError::from(e)),
                        Err(e) => return Err(e),
                    });
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out
        .into_iter()
        .map(|r| r.expect("every death is in one round"))
        .collect())
}

/// Whether Postgres refused the statement for what it holds (a value it cannot store), as
/// opposed to being away or breaking a deadlock (which the whole batch retries).
fn refused_statement(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(_)) && !wxnotify_core::batch::is_conflict(e)
}

/// Writes one round (no job twice) and answers each death in order.
async fn write_round(pool: &PgPool, reqs: &[DeadRequest]) -> Result<Vec<Written>, sqlx::Error> {
    let unsubscribe: Vec<(&str, &str)> = reqs
        .iter()
        .filter_map(|r| Some((r.row.app.as_str(), r.unsubscribe.as_deref()?)))
        .collect();
    let mut tx = if unsubscribe.is_empty() {
        None
    } else {
        Some(pool.begin().await?)
    };
    let col = |f: fn(&DeadRequest) -> &str| reqs.iter().map(f).collect::<Vec<&str>>();
    let new_rows: Vec<&NewRow> = reqs.iter().map(|r| &r.row).collect();
    let query = NewRow::bind_all(sqlx::query_as::<_, (String, String)>(DEAD_SQL), &new_rows)
        .bind(reqs.iter().map(|r| r.claim_id).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.sent).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.uncertain).collect::<Vec<_>>())
        .bind(col(|r| r.reason))
        .bind(reqs.iter().map(|r| r.errcode).collect::<Vec<_>>())
        .bind(col(|r| &r.errmsg))
        .bind(col(|r| &r.job))
        .bind(col(|r| r.source))
        .bind(col(|r| &r.key));
    let answered: HashSet<(String, String)> = match tx.as_mut() {
        Some(tx) => query.fetch_all(&mut **tx).await?,
        None => query.fetch_all(pool).await?,
    }
    .into_iter()
    .collect();
    let recorded: Vec<bool> = reqs
        .iter()
        .map(|r| answered.contains(&(r.row.app.clone(), r.row.job_id.clone())))
        .collect();
    if let Some(mut tx) = tx {
        // The recorded deaths mark their follower (again, for a write that committed before:
        // marking is idempotent).
        let marks: Vec<(&str, &str)> = reqs
            .iter()
            .zip(&recorded)
            .filter(|(_, recorded)| **recorded)
            .filter_map(|(r, _)| Some((r.row.app.as_str(), r.unsubscribe.as_deref()?)))
            .collect();
        crate::followers::store::mark_unsubscribed_all(&mut tx, &marks).await?;
        tx.commit().await?;
    }
    Ok(recorded.into_iter().map(Written::from_recorded).collect())
}

/// The deaths of a round. Answers each job recorded: now, or by this death's earlier try (its
/// dead letter's key is stored). A job missing from the answer was finished or taken over by
/// another delivery.
const DEAD_SQL: &str = "
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[],
                         $7::text[], $8::uuid[], $9::bool[], $10::bool[], $11::text[],
                         $12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[])
        AS t(job_id, app, kind, recipient, template_id, campaign_id, lane, claim_id, sent,
             uncertain, reason, errcode, errmsg, job, source, dedupe_key)
),
earlier AS MATERIALIZED (
    SELECT i.app, i.job_id FROM input i
    WHERE EXISTS (SELECT 1 FROM dead_letters l WHERE l.dedupe_key = i.dedupe_key)
),
fresh AS MATERIALIZED (
    SELECT i.* FROM input i WHERE NOT EXISTS (SELECT 1 FROM earlier e WHERE e.app = i.app AND e.job_id = i.job_id)
),
-- The claimed rows are locked in (app, job id) order first, like every batched statement of
-- the ledger, so that two batches never wait on each other in a circle.
locked AS MATERIALIZED (
    SELECT d.app, d.job_id FROM deliveries d JOIN fresh f USING (app, job_id)
    WHERE f.claim_id IS NOT NULL AND d.job_id = ANY($1)
    ORDER BY d.app, d.job_id
    FOR UPDATE OF d
),
claimed AS (
    UPDATE deliveries d
    SET state = 'dead', dead_reason = f.reason, last_errcode = f.errcode, last_errmsg = f.errmsg,
        attempts = d.attempts + CASE WHEN f.sent THEN 1 ELSE 0 END,
        channel = CASE WHEN f.sent THEN COALESCE(d.channel, 'oa_template') ELSE d.channel END,
        uncertain_since = CASE WHEN f.uncertain THEN COALESCE(d.uncertain_since, d.claimed_at, now())
                               ELSE d.uncertain_since END,
        claimed_until = NULL, updated_at = now()
    FROM fresh f JOIN locked USING (app, job_id)
    WHERE d.app = f.app AND d.job_id = f.job_id AND d.job_id = ANY($1)
      AND d.claim_id = f.claim_id
      -- `IS TRUE`: no index answers it, so the state index is never chosen over the primary key.
      AND (d.state IN ('sending', 'retrying')) IS TRUE
    RETURNING d.app, d.job_id, d.attempts, d.life, d.channel
),
unclaimed AS (
    INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, campaign_id,
                            lane, state, attempts, dead_reason, last_errcode, last_errmsg)
    SELECT job_id, app, kind, recipient, template_id, campaign_id, lane, 'dead', 0, reason,
           errcode, errmsg
    FROM fresh WHERE claim_id IS NULL
    ORDER BY app, job_id
    ON CONFLICT (app, job_id) DO UPDATE
        SET state = 'dead', dead_reason = EXCLUDED.dead_reason,
            last_errcode = EXCLUDED.last_errcode, last_errmsg = EXCLUDED.last_errmsg,
            claimed_until = NULL, updated_at = now()
        WHERE deliveries.state IN ('sending', 'retrying')
    RETURNING app, job_id, attempts, life, channel
),
dead AS (
    SELECT * FROM claimed UNION ALL SELECT * FROM unclaimed
),
history AS (
    INSERT INTO delivery_attempts (app, job_id, attempt, outcome, errcode, errmsg, life)
    SELECT d.app, d.job_id, d.attempts, 'dead', f.errcode, f.errmsg, d.life
    FROM dead d JOIN fresh f USING (app, job_id)
    WHERE f.sent
    ON CONFLICT (app, job_id, attempt) DO UPDATE SET outcome = 'dead'
),
letters AS (
    INSERT INTO dead_letters (job_id, app, reason, errcode, errmsg, job, attempts, source, life,
                              dedupe_key, channel)
    SELECT f.job_id, f.app, f.reason, f.errcode, f.errmsg, f.job::jsonb, d.attempts, f.source, d.life,
           f.dedupe_key, d.channel
    FROM dead d JOIN fresh f USING (app, job_id)
)
SELECT app, job_id FROM dead
UNION ALL
SELECT app, job_id FROM earlier";
