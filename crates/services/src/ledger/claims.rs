//! Claiming a job before its send: one batched statement claims the row (or finds it held or
//! finished) and looks the recipient up. A batch with jobs that may go by the Mini Program's
//! subscribe message also reserves their grants, in the same transaction (see
//! [`grants`](super::grants)).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::grants::{GrantAsk, reserve};
use super::{Admission, CLAIM_HEARTBEAT_LAPSE, CLAIM_LEASE, Claim, Grant, Ledger, rounds};
use crate::ledger::resolve::{Lookup, decide, needs_grant};
use wxnotify_core::batch::DbError;
use wxnotify_core::domain::Job;
use wxnotify_core::domain::Recipient;
use wxnotify_core::queue::Lane;

/// One job to claim.
#[derive(Debug, Clone)]
pub(super) struct ClaimRequest {
    job_id: String,
    app: String,
    kind: &'static str,
    recipient: String,
    template_id: String,
    campaign_id: Option<Uuid>,
    lane: &'static str,
    claim_id: Uuid,
    /// Set when the job has a subscribe message: what choosing its channel needs.
    subscribe: Option<SubscribeAsk>,
}

/// What the claim of a job with a subscribe message needs to choose its channel.
#[derive(Debug, Clone)]
struct SubscribeAsk {
    to: Recipient,
    has_oa: bool,
    template_id: String,
}

impl Ledger {
    /// Claims `job` and looks its recipient up, in one (batched) statement: the row is created,
    /// or claimed when it waits for a retry or its old claim lapsed; a live claim makes it
    /// [`Admission::Busy`], a finished row ([`FINAL_STATES`](super::FINAL_STATES)) a
    /// duplicate.
    pub async fn claim(&self, job: &Job, lane: Lane) -> Result<Admission, DbError> {
        self.claims
            .call(ClaimRequest {
                job_id: job.id.as_str().to_owned(),
                app: job.app.as_str().to_owned(),
                kind: job.to.kind(),
                recipient: job.to.value().to_owned(),
                template_id: job.ledger_template().to_owned(),
                campaign_id: job.campaign_id,
                lane: lane.routing_key(),
                claim_id: Uuid::new_v4(),
                subscribe: job.mp_subscribe.as_ref().map(|sub| SubscribeAsk {
                    to: job.to.clone(),
                    has_oa: job.oa_message().is_some(),
                    template_id: sub.template_id.as_str().to_owned(),
                }),
            })
            .await
    }
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    job_id: String,
    app: String,
    /// Set when this statement claimed the row.
    attempts: Option<i32>,
    life: Option<i32>,
    life_attempts_base: Option<i32>,
    claimed_at: Option<DateTime<Utc>>,
    uncertain_since: Option<DateTime<Utc>>,
    /// The claimed row's channel mark (`mp_subscribe`: a lapsed claim held a grant).
    channel: Option<String>,
    /// The row's state before the statement, when it was not claimed (`None`: not visible).
    prior_state: Option<String>,
    #[sqlx(flatten)]
    lookup: Lookup,
}

/// Claims a batch and looks its recipients up: one statement per round.
pub(super) async fn claim_batch(
    pool: PgPool,
    worker: Uuid,
    reqs: Vec<ClaimRequest>,
) -> Result<Vec<Admission>, sqlx::Error> {
    let n = reqs.len();
    let mut out: Vec<Option<Admission>> = vec![None; n];
    for round in rounds(reqs, |r| (&r.app, &r.job_id)) {
        let (idx, reqs): (Vec<usize>, Vec<ClaimRequest>) = round.into_iter().unzip();
        let col = |f: fn(&ClaimRequest) -> &str| reqs.iter().map(f).collect::<Vec<&str>>();
        // Only a batch with a subscribe message needs a transaction (the grants are reserved
        // beside the claim); the others stay one statement.
        let mut tx = if reqs.iter().any(|r| r.subscribe.is_some()) {
            Some(pool.begin().await?)
        } else {
            None
        };
        let query = sqlx::query_as(CLAIM_SQL)
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
            .bind(CLAIM_HEARTBEAT_LAPSE.as_secs_f64());
        let rows: Vec<ClaimRow> = match tx.as_mut() {
            Some(tx) => query.fetch_all(&mut **tx).await?,
            None => query.fetch_all(&pool).await?,
        };
        let grants = match tx {
            Some(mut tx) => {
                let asks = grant_asks(&reqs, &rows);
                let reserved = reserve(&mut tx, &asks).await?;
                tx.commit().await?;
                reserved
            }
            None => Default::default(),
        };
        let mut duplicates = Vec::new();
        for row in rows {
            let Some(pos) = reqs
                .iter()
                .position(|r| r.job_id == row.job_id && r.app == row.app)
            else {
                continue;
            };
            out[idx[pos]] = Some(match (row.attempts, row.claimed_at) {
                (Some(attempts), Some(claimed_at)) => {
                    let attempts = attempts.max(0) as u32;
                    let base = row.life_attempts_base.unwrap_or(0).max(0) as u32;
                    let grant = if row.channel.as_deref() == Some(super::MP_SUBSCRIBE) {
                        Grant::Inherited
                    } else {
                        grants
                            .get(&(row.app.clone(), row.job_id.clone()))
                            .cloned()
                            .map_or(Grant::None, Grant::Reserved)
                    };
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
                        grant,
                    }
                }
                _ if row.prior_state.as_deref().is_some_and(is_final) => {
                    duplicates.push((row.app, row.job_id));
                    Admission::Duplicate
                }
                // A live claim, or a row committed by another statement meanwhile.
                _ => Admission::Busy,
            });
        }
        count_duplicates(&pool, &duplicates).await?;
    }
    out.into_iter()
        .map(|a| {
            a.ok_or_else(|| {
                sqlx::Error::Protocol("a claimed job is missing from the answer".into())
            })
        })
        .collect()
}

/// The grants to reserve: for each job this statement claimed that has a subscribe message and
/// will not go by the OA (and whose earlier sends left nothing uncertain), its person and
/// subscribe template.
fn grant_asks(reqs: &[ClaimRequest], rows: &[ClaimRow]) -> Vec<GrantAsk> {
    rows.iter()
        .filter(|row| row.attempts.is_some() && row.uncertain_since.is_none())
        .filter(|row| row.channel.is_none())
        .filter_map(|row| {
            let req = reqs
                .iter()
                .find(|r| r.job_id == row.job_id && r.app == row.app)?;
            let ask = req.subscribe.as_ref()?;
            let resolved = decide(&ask.to, row.lookup.clone());
            if !needs_grant(ask.has_oa, &resolved) {
                return None;
            }
            let unionid = match &ask.to {
                Recipient::MpOpenid(_) => None,
                _ => row.lookup.unionid.clone(),
            };
            let mp_openid = match &ask.to {
                Recipient::MpOpenid(o) => Some(o.as_str().to_owned()),
                _ => None,
            };
            Some(GrantAsk {
                app: row.app.clone(),
                job_id: row.job_id.clone(),
                mp_openid,
                unionid,
                template_id: ask.template_id.clone(),
            })
        })
        .collect()
}

/// Counts a second delivery on each of these jobs (app, job id) that were finished already.
pub(super) async fn count_duplicates(
    pool: &PgPool,
    jobs: &[(String, String)],
) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let (apps, ids): (Vec<&str>, Vec<&str>) =
        jobs.iter().map(|(a, j)| (a.as_str(), j.as_str())).unzip();
    sqlx::query(
        "UPDATE deliveries d SET duplicates = d.duplicates + 1
         FROM UNNEST($1::text[], $2::text[]) AS t(app, job_id)
         WHERE d.app = t.app AND d.job_id = t.job_id AND d.job_id = ANY($2)",
    )
    .bind(apps)
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether a ledger state is final ([`FINAL_STATES`](super::FINAL_STATES)).
fn is_final(state: &str) -> bool {
    super::FINAL_STATES.contains(&state)
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
    -- Rows are inserted (and conflicting rows locked) in (app, job id) order, the order of
    -- every batched statement of the ledger: two batches never wait on each other in a circle.
    ORDER BY app, job_id
    ON CONFLICT (app, job_id) DO UPDATE
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
    RETURNING app, job_id, attempts, life, life_attempts_base, claimed_at, uncertain_since, channel
)
SELECT i.job_id, i.app, c.attempts, c.life, c.life_attempts_base, c.claimed_at, c.uncertain_since,
       c.channel,
       p.state AS prior_state,
       (i.kind <> 'mp_openid' OR m.mp_openid IS NOT NULL) AS mp_known,
       CASE i.kind WHEN 'mp_openid' THEN m.unionid WHEN 'unionid' THEN i.recipient END AS unionid,
       COALESCE(fo.oa_openid, fs.oa_openid) AS subscribed_openid,
       (fo.any_follower IS NOT NULL OR fa.any_follower IS NOT NULL) AS any_follower
FROM input i
LEFT JOIN claimed c USING (app, job_id)
-- A row the statement did not claim: its state, looked up by the primary key row by row (a
-- join would let young statistics pick a scan of the whole table).
LEFT JOIN LATERAL (
    SELECT d.state FROM deliveries d
    WHERE c.job_id IS NULL AND d.job_id = i.job_id AND d.app = i.app
) p ON true
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
