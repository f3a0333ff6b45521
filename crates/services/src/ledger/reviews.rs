//! The ledger's side of WeChat's content review (40252): a held job ends dead `content_blocked`
//! when the review blocked its message, or `sent` (delivered after review, without a msgid)
//! once the review window passed and it was not blocked. The reconciliation that decides is
//! `crate::reviews`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use wxnotify_core::wechat::errcode::HELD_FOR_REVIEW;

/// A record of `queryblocktmplmsg`: a held message the review blocked.
#[derive(Debug, Clone)]
pub struct BlockedRecord<'a> {
    /// The app.
    pub app: &'a str,
    /// The template.
    pub template_id: &'a str,
    /// The recipient's OA openid.
    pub openid: &'a str,
    /// When WeChat says it was sent (held).
    pub at: DateTime<Utc>,
    /// The record's id (applied once).
    pub record_id: i64,
    /// The template's title, for the dead letter's text.
    pub title: &'a str,
}

/// Ends the held job `record` is about (the one of that app, template and recipient held
/// nearest to the record's time, within `window_s`), or one already released as sent after
/// review whose verdict came late: dead `content_blocked`, with a dead letter holding its job
/// (source `review`). Returns the job id; `None` when no job matches or the record was applied
/// before.
pub async fn block_held(
    pool: &PgPool,
    record: &BlockedRecord<'_>,
    window_s: f64,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let job_id: Option<String> = sqlx::query_scalar(
        "SELECT job_id FROM deliveries
         WHERE app = $1 AND template_id = $2 AND oa_openid = $3 AND held_at IS NOT NULL
           AND (state = 'held' OR (state = 'sent' AND msgid IS NULL))
           AND block_record_id IS NULL
           AND held_at BETWEEN $4 - make_interval(secs => $6) AND $4 + make_interval(secs => $6)
           AND NOT EXISTS (SELECT 1 FROM deliveries b WHERE b.app = $1 AND b.block_record_id = $5)
         ORDER BY abs(extract(epoch FROM held_at - $4))
         LIMIT 1
         FOR UPDATE",
    )
    .bind(record.app)
    .bind(record.template_id)
    .bind(record.openid)
    .bind(record.at)
    .bind(record.record_id)
    .bind(window_s)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(job_id) = job_id else {
        return Ok(None);
    };
    let why = format!(
        "WeChat's content review blocked the message (held with 40252; listed by \
         queryblocktmplmsg as record {} of \"{}\"): the person did not get it; change its wording \
         before replaying",
        record.record_id, record.title
    );
    sqlx::query(
        "UPDATE deliveries SET state = 'dead', dead_reason = 'content_blocked', last_errcode = $2,
                last_errmsg = $3, blocked_at = now(), block_record_id = $4, claimed_until = NULL,
                updated_at = now()
         WHERE app = $5 AND job_id = $1",
    )
    .bind(&job_id)
    .bind(HELD_FOR_REVIEW)
    .bind(&why)
    .bind(record.record_id)
    .bind(record.app)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO dead_letters (job_id, app, reason, errcode, errmsg, job, raw, attempts, source, life, dedupe_key)
         SELECT d.job_id, d.app, 'content_blocked', $2, $3, h.job,
                CASE WHEN h.job IS NULL THEN 'the job was not kept' END,
                d.attempts, 'review', d.life, 'review:' || d.app || ':' || $4::bigint
         FROM deliveries d LEFT JOIN review_holds h USING (app, job_id)
         WHERE d.app = $5 AND d.job_id = $1
         ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
    )
    .bind(&job_id)
    .bind(HELD_FOR_REVIEW)
    .bind(&why)
    .bind(record.record_id)
    .bind(record.app)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE review_holds SET decided_at = now() WHERE app = $2 AND job_id = $1")
        .bind(&job_id)
        .bind(record.app)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(job_id))
}

/// Releases the held jobs of `app` and `template_id` held before `held_before` as sent:
/// WeChat delivered them after its review (the review's blocks were read to the end first).
/// Their `sent_at` is when they were held; they have no msgid. Returns how many.
pub async fn release_held(
    pool: &PgPool,
    app: &str,
    template_id: &str,
    held_before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let released: i64 = sqlx::query_scalar(
        "WITH d AS (
             UPDATE deliveries SET state = 'sent', sent_at = held_at, updated_at = now()
             WHERE app = $1 AND template_id = $2 AND state = 'held' AND held_at < $3
             RETURNING app, job_id),
         h AS (
             UPDATE review_holds SET decided_at = now()
             WHERE (app, job_id) IN (SELECT app, job_id FROM d))
         SELECT count(*) FROM d",
    )
    .bind(app)
    .bind(template_id)
    .bind(held_before)
    .fetch_one(pool)
    .await?;
    Ok(released as u64)
}

/// The templates of `app` whose held jobs wait for a verdict, or were released within the last
/// two days (a verdict may come late).
pub async fn held_templates(pool: &PgPool, app: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT template_id FROM deliveries
         WHERE app = $1 AND held_at IS NOT NULL
           AND (state = 'held' OR held_at > now() - interval '2 days')",
    )
    .bind(app)
    .fetch_all(pool)
    .await
}

/// Forgets the jobs of held messages decided more than two days ago.
pub async fn forget_decided(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM review_holds WHERE decided_at < now() - interval '2 days'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
