//! Recording sends WeChat accepted: batched, one statement per round, recognising this claim's
//! own earlier write and counting the deliveries that came second as duplicates.

use std::collections::HashSet;

use sqlx::PgPool;
use uuid::Uuid;

use super::claims::count_duplicates;
use super::{Claim, Ledger, rounds};
use wxnotify_core::batch::DbError;
use wxnotify_core::domain::{Job, OpenId};

/// One accepted send to record.
#[derive(Debug, Clone)]
pub(super) struct SentRequest {
    app: String,
    job_id: String,
    claim_id: Uuid,
    oa_openid: Option<String>,
    msgid: Option<i64>,
}

impl Ledger {
    /// Records a send WeChat accepted (batched; one attempt more): a template message to the
    /// OA follower `oa_openid`, or (`None`) the subscribe message the claim reserved a grant
    /// for, whose answer may carry no `msgid`. Returns false if another delivery of the same job
    /// id recorded it first (then this one is counted as a duplicate); true also when this
    /// claim's own earlier write committed and its reply was lost.
    pub async fn record_sent(
        &self,
        job: &Job,
        claim: &Claim,
        oa_openid: Option<&OpenId>,
        msgid: Option<i64>,
    ) -> Result<bool, DbError> {
        self.sends
            .call(SentRequest {
                app: job.app.as_str().to_owned(),
                job_id: job.id.as_str().to_owned(),
                claim_id: claim.id,
                oa_openid: oa_openid.map(|o| o.as_str().to_owned()),
                msgid,
            })
            .await
    }
}

/// Records a batch of accepted sends; `false` for a job another delivery recorded first.
pub(super) async fn sent_batch(
    pool: PgPool,
    reqs: Vec<SentRequest>,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut out = vec![false; reqs.len()];
    for round in rounds(reqs, |r| (&r.app, &r.job_id)) {
        let (idx, reqs): (Vec<usize>, Vec<SentRequest>) = round.into_iter().unzip();
        // A sent job is sent, whoever holds the claim now. `job_id = ANY($1) AND app = ANY($5)`
        // (the batch's apps, each once: see `distinct_apps`) name the primary key
        // `(job_id, app)` to the planner, so it never prefers the state index (every row in
        // flight) while the table's statistics are young.
        let mut updated: HashSet<(String, String)> = sqlx::query_as(
            "WITH t AS (
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[])
                     AS t(job_id, oa_openid, msgid, app)),
             -- The rows are locked in (app, job id) order first, like every batched statement of
             -- the ledger, so this batch and a claim batch never wait on each other in a circle.
             -- (A row of another app of the batch that has one of its ids is locked too: rare,
             -- and in the same order.)
             locked AS MATERIALIZED (
                 SELECT app, job_id FROM deliveries WHERE job_id = ANY($1) AND app = ANY($5)
                 ORDER BY app, job_id FOR UPDATE)
             UPDATE deliveries d
             SET state = 'sent', msgid = t.msgid, oa_openid = t.oa_openid, sent_at = now(), updated_at = now(),
                 -- A subscribe send's row carries its channel since its claim.
                 channel = COALESCE(d.channel, 'oa_template'),
                 attempts = d.attempts + 1, claimed_until = NULL,
                 -- WeChat's receipt can arrive on the callback before the msgid is recorded.
                 (receipt_status, receipt_at) = (
                     SELECT r.status, r.reported_at FROM delivery_receipts r
                     WHERE r.app = d.app AND r.msgid = t.msgid)
             FROM t JOIN locked USING (app, job_id)
             WHERE d.app = t.app AND d.job_id = t.job_id AND d.job_id = ANY($1) AND d.app = ANY($5)
               -- `IS TRUE`: no index answers it, so the state index (young statistics count
               -- few rows in flight) is never chosen over the primary key.
               AND (d.state IN ('sending', 'retrying')) IS TRUE
             RETURNING d.app, d.job_id",
        )
        .bind(reqs.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.oa_openid.as_deref()).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.msgid).collect::<Vec<_>>())
        .bind(reqs.iter().map(|r| r.app.as_str()).collect::<Vec<_>>())
        .bind(distinct_apps(&reqs))
        .fetch_all(&pool)
        .await?
        .into_iter()
        .collect();
        // The rest (rare): a row already sent by this very claim is this claim's own earlier
        // write whose reply was lost; any other was recorded by another delivery first.
        let key = |r: &SentRequest| (r.app.clone(), r.job_id.clone());
        let rest: Vec<&SentRequest> = reqs.iter().filter(|r| !updated.contains(&key(r))).collect();
        if !rest.is_empty() {
            let own: Vec<(String, String)> = sqlx::query_as(
                "SELECT d.app, d.job_id FROM deliveries d
                 JOIN UNNEST($1::text[], $2::uuid[], $3::text[]) AS t(job_id, claim_id, app)
                     USING (app, job_id)
                 WHERE d.job_id = ANY($1) AND d.state = 'sent' AND d.claim_id = t.claim_id",
            )
            .bind(rest.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>())
            .bind(rest.iter().map(|r| r.claim_id).collect::<Vec<_>>())
            .bind(rest.iter().map(|r| r.app.as_str()).collect::<Vec<_>>())
            .fetch_all(&pool)
            .await?;
            updated.extend(own);
        }
        let mut lost = Vec::new();
        for (i, r) in idx.into_iter().zip(&reqs) {
            out[i] = updated.contains(&key(r));
            if !out[i] {
                lost.push(key(r));
            }
        }
        count_duplicates(&pool, &lost).await?;
    }
    Ok(out)
}

/// The apps of a batch, each once. Postgres prices an index scan on `app = ANY(..) AND
/// job_id = ANY(..)` as one probe per pair of elements: with the app repeated for every row, a
/// batch of 40 costs 1,600 probes on paper, and the planner reads the whole table instead.
fn distinct_apps(reqs: &[SentRequest]) -> Vec<&str> {
    let mut apps: Vec<&str> = reqs.iter().map(|r| r.app.as_str()).collect();
    apps.sort_unstable();
    apps.dedup();
    apps
}
