//! The SQL of the dead-letter commands.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Which dead letters a command works on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this reason.
    pub reason: Option<String>,
    /// Only this app.
    pub app: Option<String>,
    /// Only younger than this many minutes.
    pub since_minutes: Option<u32>,
    /// Include replayed ones.
    pub include_replayed: bool,
    /// At most this many.
    pub limit: u32,
}

/// One dead letter.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeadLetterRow {
    /// Its id.
    pub id: i64,
    /// The job id, when the message had one.
    pub job_id: Option<String>,
    /// The app, when known.
    pub app: Option<String>,
    /// Why it died.
    pub reason: String,
    /// WeChat's errcode, if WeChat refused it.
    pub errcode: Option<i64>,
    /// WeChat's message (with its rid) or wxnotify's explanation.
    pub errmsg: Option<String>,
    /// The job as JSON, when it parsed.
    pub job: Option<serde_json::Value>,
    /// The raw message, when it did not.
    pub raw: Option<String>,
    /// Attempts made at WeChat.
    pub attempts: i32,
    /// `worker` or `broker`.
    pub source: String,
    /// When it died.
    pub created_at: DateTime<Utc>,
    /// When it was replayed, if it was.
    pub replayed_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, job_id, app, reason, errcode, errmsg, job, raw, attempts, source, created_at, replayed_at";

/// Dead letters matching `f`, newest first.
pub async fn list(pool: &PgPool, f: &Filter) -> Result<Vec<DeadLetterRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters
         WHERE ($1::text IS NULL OR reason = $1)
           AND ($2::text IS NULL OR app = $2)
           AND ($3::int IS NULL OR created_at > now() - make_interval(mins => $3))
           AND ($4 OR replayed_at IS NULL)
         ORDER BY created_at DESC, id DESC
         LIMIT $5"
    )))
    .bind(&f.reason)
    .bind(&f.app)
    .bind(f.since_minutes.map(|m| m as i32))
    .bind(f.include_replayed)
    .bind(f.limit as i64)
    .fetch_all(pool)
    .await
}

/// One dead letter.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<DeadLetterRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Several dead letters by id.
pub async fn by_ids(pool: &PgPool, ids: &[i64]) -> Result<Vec<DeadLetterRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE id = ANY($1) ORDER BY id"
    )))
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// One failed attempt of a job.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttemptRow {
    /// 1-based.
    pub attempt: i32,
    /// `retry` or `dead`.
    pub outcome: String,
    /// WeChat's errcode.
    pub errcode: Option<i64>,
    /// WeChat's message.
    pub errmsg: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The attempt history of a job.
pub async fn history(pool: &PgPool, job_id: Option<&str>) -> Result<Vec<AttemptRow>, sqlx::Error> {
    let Some(job_id) = job_id else {
        return Ok(Vec::new());
    };
    sqlx::query_as(
        "SELECT attempt, outcome, errcode, errmsg, at FROM delivery_attempts WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await
}

/// Re-opens the ledger row of a dead job so its replay is accepted (attempts start again).
pub async fn reopen(pool: &PgPool, job_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = 'retrying', attempts = 0, dead_reason = NULL, updated_at = now()
         WHERE job_id = $1 AND state = 'dead'",
    )
    .bind(job_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Undoes [`reopen`] when the publish failed.
pub async fn close_again(pool: &PgPool, job_id: &str, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = 'dead', dead_reason = $2, updated_at = now()
         WHERE job_id = $1 AND state = 'retrying'",
    )
    .bind(job_id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a dead letter replayed.
pub async fn mark_replayed(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes dead letters older than `days`.
pub async fn purge(pool: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query(
            "DELETE FROM dead_letters WHERE created_at < now() - make_interval(days => $1)",
        )
        .bind(days as i32)
        .execute(pool)
        .await?
        .rows_affected(),
    )
}
