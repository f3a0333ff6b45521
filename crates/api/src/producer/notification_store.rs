//! The SQL of the producer API: claiming job ids with their content hash (idempotency), marking
//! them accepted once RabbitMQ confirmed, and a notification's status from the ledger.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use wxnotify_core::domain::AppName;

/// A job as the producer API's store knows it: its app, then its id (job ids are per app).
pub type JobKey = (String, String);

/// What a job id already stands for, when a request brings it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: this request publishes it.
    New,
    /// Seen with the same content, never confirmed (an earlier publish failed): publish again.
    Retry,
    /// Seen with the same content and accepted: answer with its status.
    Existing,
    /// Seen with other content in the same app: 409. (Job ids are per app: another app's use
    /// of the id is neither a conflict nor visible.)
    Conflict,
}

/// One job id to claim, with what it must stand for.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The job id.
    pub job_id: String,
    /// Its app.
    pub app: String,
    /// The SHA-256 of its content.
    pub content_sha256: [u8; 32],
    /// The API key of the request.
    pub api_key_id: uuid::Uuid,
}

/// Claims each job id, in one statement for the ids not seen before and one look-up for the
/// others. The rows are written before publishing so that two requests with one id and
/// different content cannot both be published. An id may appear more than once (requests
/// batched together): its first appearance claims it, the later ones are answered as a repeat
/// of it (`Retry` with the same content, `Conflict` with other content).
///
/// The claim commits without waiting for its WAL to reach the disk (`synchronous_commit` off
/// for this transaction): it is visible to every other request at once, and it becomes durable
/// with the acceptance ([`mark_accepted`]), whose synchronous commit flushes the WAL up to
/// itself, so every claim made before it too. A claim lost to a Postgres crash before that
/// flush belongs to a request that was never answered 202; its client sends it again. One
/// disk flush per request instead of two (about 3 ms each on this kind of machine).
pub async fn claim(pool: &PgPool, jobs: &[ClaimRequest]) -> Result<Vec<Claim>, sqlx::Error> {
    let key = |j: &ClaimRequest| (j.app.clone(), j.job_id.clone());
    let mut seen = std::collections::HashSet::with_capacity(jobs.len());
    let firsts: Vec<&ClaimRequest> = jobs.iter().filter(|j| seen.insert(key(j))).collect();
    let mut tx = pool
        .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
        .await?;
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO api_notifications (job_id, app, content_sha256, api_key_id)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::uuid[])
         ON CONFLICT (app, job_id) DO NOTHING
         RETURNING app, job_id",
    )
    .bind(firsts.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>())
    .bind(firsts.iter().map(|j| j.app.as_str()).collect::<Vec<_>>())
    .bind(
        firsts
            .iter()
            .map(|j| &j.content_sha256[..])
            .collect::<Vec<_>>(),
    )
    .bind(firsts.iter().map(|j| j.api_key_id).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    // The first appearance of an id this statement inserted claims it; every other job is
    // looked up.
    let mut claimed: std::collections::HashSet<(String, String)> = inserted.into_iter().collect();
    let firsts: Vec<Option<Claim>> = jobs
        .iter()
        .map(|j| claimed.remove(&key(j)).then_some(Claim::New))
        .collect();
    let lookups: Vec<&ClaimRequest> = jobs
        .iter()
        .zip(&firsts)
        .filter(|(_, claim)| claim.is_none())
        .map(|(j, _)| j)
        .collect();
    let mut known = std::collections::HashMap::new();
    if !lookups.is_empty() {
        let rows: Vec<(String, String, Vec<u8>, bool)> = sqlx::query_as(
            "SELECT n.app, n.job_id, n.content_sha256, n.accepted_at IS NOT NULL
             FROM api_notifications n JOIN UNNEST($1::text[], $2::text[]) AS t(app, job_id)
                 USING (app, job_id)",
        )
        .bind(lookups.iter().map(|j| j.app.as_str()).collect::<Vec<_>>())
        .bind(
            lookups
                .iter()
                .map(|j| j.job_id.as_str())
                .collect::<Vec<_>>(),
        )
        .fetch_all(pool)
        .await?;
        for (app, id, sha, accepted) in rows {
            known.insert((app, id), (sha, accepted));
        }
    }
    Ok(jobs
        .iter()
        .zip(firsts)
        .map(|(j, claim)| {
            claim.unwrap_or_else(|| match known.get(&key(j)) {
                // Deleted in between (nothing deletes these rows today): treat as a retry.
                None => Claim::Retry,
                Some((s, _)) if s[..] != j.content_sha256[..] => Claim::Conflict,
                Some((_, true)) => Claim::Existing,
                Some((_, false)) => Claim::Retry,
            })
        })
        .collect())
}

/// Marks jobs (app, job id) accepted (RabbitMQ confirmed them); the first acceptance time is
/// kept. Its commit waits for the disk, which makes the claims before it durable too (see
/// [`claim`]).
pub async fn mark_accepted(pool: &PgPool, jobs: &[JobKey]) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let (apps, ids): (Vec<&str>, Vec<&str>) =
        jobs.iter().map(|(a, j)| (a.as_str(), j.as_str())).unzip();
    sqlx::query(
        "UPDATE api_notifications n SET accepted_at = now()
         FROM UNNEST($1::text[], $2::text[]) AS t(app, job_id)
         WHERE n.app = t.app AND n.job_id = t.job_id AND n.accepted_at IS NULL",
    )
    .bind(apps)
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Where a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Accepted and waiting for (or between) attempts.
    Queued,
    /// WeChat accepted it (`msgid`, `sent_at`; `receipt` once WeChat reports delivery).
    Sent,
    /// Not sent again: its id had already been used by a job that finished before this one
    /// was accepted (the fields describe that earlier job), or WeChat answered 40241 (an
    /// identical message went out within 60 seconds; `errcode` and `errmsg` say so).
    Duplicate,
    /// Will not be sent: `reason`, and WeChat's `errcode` and `errmsg` when WeChat refused.
    Dead,
    /// Its campaign was cancelled before it was sent.
    Cancelled,
    /// WeChat holds it for its content review (errcode 40252): it is never sent again; WeChat
    /// delivers it if the review passes (the state then becomes `sent`, without a `msgid`), and
    /// if not it becomes `dead` with reason `content_blocked`.
    Held,
}

/// WeChat's delivery receipt (TEMPLATESENDJOBFINISH).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    /// `success`, `failed:user block` or `failed: system failed`, as WeChat reports it.
    pub status: String,
    /// When WeChat says it happened.
    pub at: Option<DateTime<Utc>>,
}

/// The status of one notification (`GET /v1/notifications/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NotificationStatus {
    /// The job id.
    pub id: String,
    /// The app.
    pub app: String,
    /// Where it is.
    pub state: State,
    /// Attempts made at WeChat so far.
    pub attempts: i32,
    /// Why it is dead (`not_following`, `retries_exhausted`, `payload_rejected` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// WeChat's errcode of the last failed attempt of the job's current life (a replay starts
    /// a new life; a sent job has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    /// WeChat's message of that attempt (with its `rid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errmsg: Option<String>,
    /// Which life of the job this is: 1, and one more for each replay of its dead letter.
    pub life: i32,
    /// WeChat's message id, as a string (it exceeds 2^53, which JSON numbers in JavaScript
    /// cannot hold exactly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgid: Option<String>,
    /// When WeChat accepted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// Which channel sent it (or tried, for a job dead after a send): `oa_template` (the OA's
    /// template message) or `mp_subscribe` (the Mini Program's subscribe message). A subscribe
    /// message may have no `msgid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// When WeChat held it for its content review (40252). A `sent` notification with
    /// `held_at` (and no `msgid`) was delivered after the review.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_at: Option<DateTime<Utc>>,
    /// WeChat's delivery receipt, once it arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    /// When RabbitMQ confirmed it (jobs published straight to RabbitMQ have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<DateTime<Utc>>,
    /// The last change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Where to ask again.
    pub status_url: String,
}

/// The path of a notification's status.
pub fn status_url(id: &str) -> String {
    format!("/v1/notifications/{id}")
}

#[derive(sqlx::FromRow)]
struct StatusRow {
    job_id: String,
    app: String,
    api_created_at: Option<DateTime<Utc>>,
    accepted_at: Option<DateTime<Utc>>,
    ledger_created_at: Option<DateTime<Utc>>,
    state: Option<String>,
    attempts: Option<i32>,
    dead_reason: Option<String>,
    last_errcode: Option<i64>,
    last_errmsg: Option<String>,
    life: Option<i32>,
    msgid: Option<i64>,
    sent_at: Option<DateTime<Utc>>,
    channel: Option<String>,
    held_at: Option<DateTime<Utc>>,
    receipt_status: Option<String>,
    receipt_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

/// The statuses of `ids` that belong to `app` and were accepted (over HTTP, or reached the
/// ledger some other way). Ids not found are left out.
pub async fn statuses(
    pool: &PgPool,
    app: &AppName,
    ids: &[&str],
) -> Result<Vec<NotificationStatus>, sqlx::Error> {
    let rows: Vec<StatusRow> = sqlx::query_as(
        "SELECT COALESCE(a.job_id, d.job_id) AS job_id, COALESCE(d.app, a.app) AS app,
                a.created_at AS api_created_at, a.accepted_at, d.created_at AS ledger_created_at,
                d.state, d.attempts, d.dead_reason, d.life,
                -- A replayed job's errors are those of its current life only.
                CASE WHEN d.life > 1 THEN e.errcode ELSE d.last_errcode END AS last_errcode,
                CASE WHEN d.life > 1 THEN e.errmsg ELSE d.last_errmsg END AS last_errmsg,
                d.msgid, d.sent_at, d.channel, d.held_at, d.receipt_status, d.receipt_at, d.updated_at
         FROM (SELECT * FROM api_notifications WHERE app = $2 AND job_id = ANY($1)) a
         FULL JOIN (SELECT * FROM deliveries WHERE app = $2 AND job_id = ANY($1)) d
             ON d.job_id = a.job_id
         LEFT JOIN LATERAL (
             SELECT t.errcode, t.errmsg FROM delivery_attempts t
             WHERE t.app = d.app AND t.job_id = d.job_id AND t.life = d.life
             ORDER BY t.attempt DESC LIMIT 1) e ON true",
    )
    .bind(ids)
    .bind(app.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(status_of).collect())
}

fn status_of(r: StatusRow) -> Option<NotificationStatus> {
    let state = match r.state.as_deref() {
        // Never confirmed and never seen by a worker: it was not accepted.
        None if r.accepted_at.is_none() => return None,
        None | Some("sending" | "retrying") => State::Queued,
        Some("held") => State::Held,
        Some(finished @ ("sent" | "dead" | "cancelled" | "duplicate")) => {
            let earlier = matches!(
                (r.ledger_created_at, r.api_created_at),
                (Some(ledger), Some(api)) if ledger < api
            );
            match finished {
                _ if earlier && finished != "cancelled" => State::Duplicate,
                "sent" => State::Sent,
                "dead" => State::Dead,
                "duplicate" => State::Duplicate,
                _ => State::Cancelled,
            }
        }
        // A state a newer wxnotify added: not finished as far as this version knows.
        Some(_) => State::Queued,
    };
    // A sent job's earlier failures (of this life or a replayed one) are not its state.
    let failed = !matches!(state, State::Sent);
    Some(NotificationStatus {
        status_url: status_url(&r.job_id),
        id: r.job_id,
        app: r.app,
        state,
        attempts: r.attempts.unwrap_or(0),
        reason: r.dead_reason,
        errcode: r.last_errcode.filter(|_| failed),
        errmsg: r.last_errmsg.filter(|_| failed),
        life: r.life.unwrap_or(1),
        msgid: r.msgid.map(|m| m.to_string()),
        sent_at: r.sent_at,
        channel: r.channel,
        held_at: r.held_at,
        receipt: r.receipt_status.map(|status| Receipt {
            status,
            at: r.receipt_at,
        }),
        accepted_at: r.accepted_at,
        updated_at: r.updated_at,
    })
}
