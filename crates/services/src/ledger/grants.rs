//! Reserving subscribe grants for claimed jobs, in the claim's transaction.
//!
//! A job that will go by the Mini Program's subscribe message takes one of the person's grants
//! for its template (`mp_grants`, see its migration) when it is claimed: the grant row is locked,
//! what is left is counted, and as many jobs of the batch as there are grants left get one
//! (`used` rises by that many). Two claims that want the last grant queue on the row's lock; the
//! second sees none left. The ledger row is marked (`channel = 'mp_subscribe'`, `mp_openid`,
//! `mp_template_id`): the mark says a grant is held. How the attempt's end keeps the grant used
//! or gives it back is one rule in SQL (the `deliveries_mp_grant_end` trigger): a lost answer and
//! a send WeChat took keep it; anything that proves nothing was sent gives it back; 43101 writes
//! off what is left.

use std::collections::HashMap;

use sqlx::PgConnection;
use wxnotify_core::domain::OpenId;

/// A claimed job that wants a grant.
#[derive(Debug, Clone)]
pub(super) struct GrantAsk {
    /// The job's app.
    pub app: String,
    /// The job's id.
    pub job_id: String,
    /// The person's Mini Program openid when the job names it.
    pub mp_openid: Option<String>,
    /// Else the unionid that leads to it (through `mp_users`).
    pub unionid: Option<String>,
    /// The subscribe template.
    pub template_id: String,
}

/// Reserves grants for `asks` on `tx` (which holds their claims) and marks their ledger rows;
/// returns the jobs (app, job id) that got one, with the Mini Program openid to send to.
pub(super) async fn reserve(
    tx: &mut PgConnection,
    asks: &[GrantAsk],
) -> Result<HashMap<(String, String), OpenId>, sqlx::Error> {
    if asks.is_empty() {
        return Ok(HashMap::new());
    }
    let col = |f: fn(&GrantAsk) -> Option<&str>| asks.iter().map(f).collect::<Vec<_>>();
    let rows: Vec<(String, String, String)> = sqlx::query_as(RESERVE_SQL)
        .bind(col(|a| Some(a.app.as_str())))
        .bind(col(|a| Some(a.job_id.as_str())))
        .bind(col(|a| a.mp_openid.as_deref()))
        .bind(col(|a| a.unionid.as_deref()))
        .bind(col(|a| Some(a.template_id.as_str())))
        .fetch_all(&mut *tx)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(app, job_id, mp_openid)| {
            OpenId::parse(mp_openid).ok().map(|o| ((app, job_id), o))
        })
        .collect())
}

/// Reserves the grants of a batch and marks the claimed rows. The grant rows are locked in key
/// order (the `FOR UPDATE` re-reads a row another transaction changed meanwhile, so `take` is
/// counted on its newest values); within the batch the jobs of one person and template get what
/// is left in job id order.
const RESERVE_SQL: &str = "
WITH input AS (
    SELECT t.app, t.job_id, t.template_id,
           COALESCE(t.mp_openid,
                    (SELECT m.mp_openid FROM mp_users m
                     WHERE m.app = t.app AND m.unionid = t.unionid
                     ORDER BY m.last_login_at DESC LIMIT 1)) AS mp_openid
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
        AS t(app, job_id, mp_openid, unionid, template_id)
),
ranked AS (
    SELECT app, job_id, mp_openid, template_id,
           row_number() OVER (PARTITION BY app, mp_openid, template_id ORDER BY job_id) AS rank
    FROM input WHERE mp_openid IS NOT NULL
),
wanted AS (
    SELECT app, mp_openid, template_id, count(*) AS n FROM ranked GROUP BY app, mp_openid, template_id
),
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
spent AS (
    UPDATE mp_grants g SET used = g.used + l.take, updated_at = now()
    FROM locked l
    WHERE g.app = l.app AND g.mp_openid = l.mp_openid AND g.template_id = l.template_id
      AND l.take > 0
    RETURNING g.app
),
chosen AS (
    SELECT r.app, r.job_id, r.mp_openid, r.template_id
    FROM ranked r
    JOIN locked l ON l.app = r.app AND l.mp_openid = r.mp_openid AND l.template_id = r.template_id
    WHERE r.rank <= l.take
),
marked AS (
    UPDATE deliveries d
    SET channel = 'mp_subscribe', mp_openid = c.mp_openid, mp_template_id = c.template_id
    FROM chosen c
    WHERE d.app = c.app AND d.job_id = c.job_id
    RETURNING d.app, d.job_id, d.mp_openid
)
SELECT app, job_id, mp_openid FROM marked";
