//! Claiming a job before its send: one batched statement claims the row (or finds it held or
//! finished), looks the recipient up and, for a job that will go by the Mini Program's subscribe
//! message, reserves one of the person's grants.
//!
//! **Grants.** A job with a subscribe message that the OA does not reach (see
//! [`needs_grant`](super::resolve::needs_grant)) takes one of the person's grants for its
//! template (`mp_grants`, see its migration) in the statement that claims it: the grant rows are
//! locked, what is left is counted, as many jobs of the batch as there are grants left get one
//! (`used` rises by as many as were claimed), and the claimed row carries the mark
//! (`channel = 'mp_subscribe'`, `mp_openid`, `mp_template_id`) from the write that claims it.
//! The mark says a grant is held. Two claims that want the last grant queue on the row's lock;
//! the second sees none left. How the attempt's end keeps the grant used or gives it back is one
//! rule in SQL (the `deliveries_mp_grant_end` trigger): a lost answer and a send WeChat took keep
//! it; anything that proves nothing was sent gives it back; 43101 writes off what is left.
//!
//! The statement locks in one order: the job rows that exist (by app and job id), then the
//! grant rows, then it writes; the end of an attempt locks its job row, then (the trigger) the
//! grant row.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Admission, CLAIM_HEARTBEAT_LAPSE, CLAIM_LEASE, Claim, Grant, Ledger, NewRow, rounds};
use crate::ledger::resolve::Lookup;
use wxnotify_core::batch::DbError;
use wxnotify_core::domain::{Job, OpenId};
use wxnotify_core::queue::Lane;

/// One job to claim.
#[derive(Debug, Clone)]
pub(super) struct ClaimRequest {
    row: NewRow,
    claim_id: Uuid,
    /// Whether the job has an OA template message.
    has_oa: bool,
    /// The subscribe template of the job's subscribe message, if it has one.
    mp_template_id: Option<String>,
}

impl Ledger {
    /// Claims `job` and looks its recipient up, in one (batched) statement: the row is created,
    /// or claimed when it waits for a retry or its old claim lapsed; a live claim makes it
    /// [`Admission::Busy`], a finished row ([`FINAL_STATES`](super::FINAL_STATES)) a
    /// duplicate.
    pub async fn claim(&self, job: &Job, lane: Lane) -> Result<Admission, DbError> {
        self.claims
            .call(ClaimRequest {
                row: NewRow::of(job, lane),
                claim_id: Uuid::new_v4(),
                has_oa: job.oa_message().is_some(),
                mp_template_id: job
                    .mp_subscribe
                    .as_ref()
                    .map(|sub| sub.template_id.as_str().to_owned()),
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
    /// The Mini Program openid of the grant this statement reserved for the claimed job.
    reserved_mp_openid: Option<String>,
    /// Whether the claimed row carried the mark of a lapsed claim's grant.
    inherited: bool,
    /// The row's state before the statement, when it was not claimed (`None`: not visible).
    prior_state: Option<String>,
    #[sqlx(flatten)]
    lookup: Lookup,
}

/// Claims a batch, looks its recipients up and reserves its grants: one statement per round.
pub(super) async fn claim_batch(
    pool: PgPool,
    worker: Uuid,
    reqs: Vec<ClaimRequest>,
) -> Result<Vec<Admission>, sqlx::Error> {
    let n = reqs.len();
    let mut out: Vec<Option<Admission>> = vec![None; n];
    for round in rounds(reqs, |r| r.row.key()) {
        let (idx, reqs): (Vec<usize>, Vec<ClaimRequest>) = round.into_iter().unzip();
        let new_rows: Vec<&NewRow> = reqs.iter().map(|r| &r.row).collect();
        let rows: Vec<ClaimRow> = NewRow::bind_all(sqlx::query_as(CLAIM_SQL), &new_rows)
            .bind(reqs.iter().map(|r| r.claim_id).collect::<Vec<_>>())
            .bind(worker)
            .bind(CLAIM_LEASE.as_secs_f64())
            .bind(CLAIM_HEARTBEAT_LAPSE.as_secs_f64())
            .bind(reqs.iter().map(|r| r.has_oa).collect::<Vec<_>>())
            .bind(
                reqs.iter()
                    .map(|r| r.mp_template_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(distinct_apps(&reqs))
            .fetch_all(&pool)
            .await?;
        let mut duplicates = Vec::new();
        for row in rows {
            let Some(pos) = reqs
                .iter()
                .position(|r| r.row.job_id == row.job_id && r.row.app == row.app)
            else {
                continue;
            };
            out[idx[pos]] = Some(match (row.attempts, row.claimed_at) {
                (Some(attempts), Some(claimed_at)) => {
                    let attempts = attempts.max(0) as u32;
                    let base = row.life_attempts_base.unwrap_or(0).max(0) as u32;
                    let grant = if row.inherited {
                        Grant::Inherited
                    } else {
                        row.reserved_mp_openid
                            .and_then(|o| OpenId::parse(o).ok())
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

/// The apps of a round, each once (for `app = ANY(..)` beside `job_id = ANY(..)`: see the
/// sends' statement).
fn distinct_apps(reqs: &[ClaimRequest]) -> Vec<&str> {
    let mut apps: Vec<&str> = reqs.iter().map(|r| r.row.app.as_str()).collect();
    apps.sort_unstable();
    apps.dedup();
    apps
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

/// The claim, the recipient look-up and the grants of a round. The look-ups use the primary
/// keys of `mp_users` and `oa_followers` and the `oa_followers_unionid` index.
///
/// Which rows may be claimed is decided once, on the existing rows locked first (`existing`): a
/// row that waits for a retry, or whose claim lapsed (its lease ran out or its worker stopped
/// heartbeating). A row inserted by another statement meanwhile is not claimed (busy).
///
/// Whether a job needs a grant mirrors [`needs_grant`](super::resolve::needs_grant) over
/// [`decide`](super::resolve::decide): it has a subscribe message, and no OA template message
/// or no follower (a subscribed follower, or an OA openid wxnotify has not seen). A job whose
/// earlier send may have reached the person (`uncertain_since`, or a lapsed claim taken over)
/// gets none, and neither does one whose lapsed claim held a grant (it is `inherited`). Within
/// the round the jobs of one person and template get what is left in job id order.
const CLAIM_SQL: &str = "
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[],
                         $7::text[], $8::uuid[], $12::bool[], $13::text[])
        AS t(job_id, app, kind, recipient, template_id, campaign_id, lane, claim_id, has_oa,
             mp_template_id)
),
looked AS MATERIALIZED (
    SELECT i.*,
           (i.kind <> 'mp_openid' OR m.mp_openid IS NOT NULL) AS mp_known,
           CASE i.kind WHEN 'mp_openid' THEN m.unionid WHEN 'unionid' THEN i.recipient END AS unionid,
           COALESCE(fo.oa_openid, fs.oa_openid) AS subscribed_openid,
           (fo.any_follower IS NOT NULL OR fa.any_follower IS NOT NULL) AS any_follower
    FROM input i
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
    ) fa ON true
),
-- The rows that exist, locked in (app, job id) order like every batched statement of the
-- ledger. `job_id = ANY($1) AND app = ANY($14)` name the primary key to the planner (a row of
-- another app of the round with one of its ids is locked too: rare, and in the same order).
existing AS MATERIALIZED (
    SELECT d.app, d.job_id, d.state, d.channel, d.uncertain_since,
           (d.state = 'retrying'
            OR (d.state = 'sending'
                AND (d.claimed_until IS NULL OR d.claimed_until < now()
                     OR NOT EXISTS (SELECT 1 FROM workers w
                                    WHERE w.id = d.claimed_by
                                      AND w.heartbeat_at > now() - make_interval(secs => $11)))))
               AS claimable
    FROM deliveries d
    WHERE d.job_id = ANY($1) AND d.app = ANY($14)
    ORDER BY d.app, d.job_id
    FOR UPDATE
),
asks AS (
    SELECT l.app, l.job_id, l.mp_template_id AS template_id,
           COALESCE(CASE WHEN l.kind = 'mp_openid' THEN l.recipient END,
                    (SELECT m.mp_openid FROM mp_users m
                     WHERE l.kind = 'unionid' AND m.app = l.app AND m.unionid = l.unionid
                     ORDER BY m.last_login_at DESC LIMIT 1)) AS mp_openid
    FROM looked l
    LEFT JOIN existing e ON e.app = l.app AND e.job_id = l.job_id
    WHERE l.mp_template_id IS NOT NULL
      AND (e.job_id IS NULL
           OR (e.claimable AND e.state = 'retrying' AND e.uncertain_since IS NULL
               AND e.channel IS NULL))
      AND NOT (l.has_oa AND (l.subscribed_openid IS NOT NULL
                             OR (l.kind = 'oa_openid' AND NOT l.any_follower)))
),
ranked AS (
    SELECT app, job_id, mp_openid, template_id,
           row_number() OVER (PARTITION BY app, mp_openid, template_id ORDER BY job_id) AS rank
    FROM asks WHERE mp_openid IS NOT NULL
),
wanted AS (
    SELECT app, mp_openid, template_id, count(*) AS n FROM ranked GROUP BY app, mp_openid, template_id
),
-- The grant rows, locked in key order (the `FOR UPDATE` re-reads a row another transaction
-- changed meanwhile, so `take` is counted on its newest values).
locked AS MATERIALIZED (
    SELECT g.app, g.mp_openid, g.template_id,
           CASE WHEN g.long_term THEN w.n
                ELSE LEAST(w.n, GREATEST(g.granted - g.used - g.voided, 0)) END AS take
    FROM mp_grants g
    JOIN wanted w ON w.app = g.app AND w.mp_openid = g.mp_openid AND w.template_id = g.template_id
    WHERE g.state = 'accept'
    ORDER BY g.app, g.mp_openid, g.template_id
    FOR UPDATE OF g
),
chosen AS MATERIALIZED (
    SELECT r.app, r.job_id, r.mp_openid, r.template_id
    FROM ranked r
    JOIN locked l ON l.app = r.app AND l.mp_openid = r.mp_openid AND l.template_id = r.template_id
    WHERE r.rank <= l.take
),
claimed AS (
    INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, campaign_id, lane, state, attempts,
                            claim_id, claimed_by, claimed_at, claimed_until,
                            channel, mp_openid, mp_template_id)
    SELECT i.job_id, i.app, i.kind, i.recipient, i.template_id, i.campaign_id, i.lane, 'sending', 0,
           i.claim_id, $9, now(), now() + make_interval(secs => $10),
           CASE WHEN c.job_id IS NOT NULL THEN 'mp_subscribe' END, c.mp_openid, c.template_id
    FROM input i LEFT JOIN chosen c ON c.app = i.app AND c.job_id = i.job_id
    -- Rows are inserted (and conflicting rows locked) in (app, job id) order.
    ORDER BY i.app, i.job_id
    ON CONFLICT (app, job_id) DO UPDATE
        SET state = 'sending', claim_id = EXCLUDED.claim_id, claimed_by = $9, claimed_at = now(),
            claimed_until = EXCLUDED.claimed_until, updated_at = now(),
            -- A lapsed claim's mark stays: its grant may have been spent.
            channel = COALESCE(EXCLUDED.channel, deliveries.channel),
            mp_openid = COALESCE(EXCLUDED.mp_openid, deliveries.mp_openid),
            mp_template_id = COALESCE(EXCLUDED.mp_template_id, deliveries.mp_template_id),
            -- Taking over a lapsed claim: its worker may have sent before it died.
            uncertain_since = CASE WHEN deliveries.state = 'sending'
                                   THEN COALESCE(deliveries.uncertain_since, deliveries.claimed_at, deliveries.updated_at)
                                   ELSE deliveries.uncertain_since END
        WHERE (SELECT e.claimable FROM existing e
               WHERE e.app = EXCLUDED.app AND e.job_id = EXCLUDED.job_id) IS TRUE
    RETURNING app, job_id, attempts, life, life_attempts_base, claimed_at, uncertain_since, channel
),
spent AS (
    UPDATE mp_grants g SET used = g.used + s.n, updated_at = now()
    FROM (SELECT c.app, c.mp_openid, c.template_id, count(*) AS n
          FROM chosen c JOIN claimed USING (app, job_id)
          GROUP BY c.app, c.mp_openid, c.template_id) s
    WHERE g.app = s.app AND g.mp_openid = s.mp_openid AND g.template_id = s.template_id
)
SELECT l.job_id, l.app, c.attempts, c.life, c.life_attempts_base, c.claimed_at, c.uncertain_since,
       CASE WHEN c.job_id IS NOT NULL THEN ch.mp_openid END AS reserved_mp_openid,
       (c.channel = 'mp_subscribe' AND ch.job_id IS NULL) IS TRUE AS inherited,
       e.state AS prior_state,
       l.mp_known, l.unionid, l.subscribed_openid, l.any_follower
FROM looked l
LEFT JOIN claimed c ON c.app = l.app AND c.job_id = l.job_id
LEFT JOIN chosen ch ON ch.app = l.app AND ch.job_id = l.job_id
LEFT JOIN existing e ON e.app = l.app AND e.job_id = l.job_id";
