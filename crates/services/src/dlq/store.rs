//! The SQL of the dead-letter commands.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

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
    /// The channel its last send went by (`oa_template` or `mp_subscribe`); `None` when no
    /// send was made.
    pub channel: Option<String>,
}

impl DeadLetterRow {
    /// The job it was, as the ledger knows it: its app and id (`None` for a message that was
    /// not a job).
    pub fn job_key(&self) -> Option<(&str, &str)> {
        self.app.as_deref().zip(self.job_id.as_deref())
    }
}

/// The columns of a [`DeadLetterRow`], for every query that reads one.
pub(super) const COLUMNS: &str = "id, job_id, app, reason, errcode, errmsg, job, raw, attempts, source, created_at, replayed_at, channel";

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
    /// 1-based, counted across lives.
    pub attempt: i32,
    /// The life it belonged to (1, then +1 per replay).
    pub life: i32,
    /// `retry` or `dead`.
    pub outcome: String,
    /// WeChat's errcode.
    pub errcode: Option<i64>,
    /// WeChat's message.
    pub errmsg: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The attempt history of a job, known by its app and id (`None`: a letter without a job).
pub async fn history(
    pool: &PgPool,
    job: Option<(&str, &str)>,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    let Some((app, job_id)) = job else {
        return Ok(Vec::new());
    };
    sqlx::query_as(
        "SELECT attempt, life, outcome, errcode, errmsg, at FROM delivery_attempts
         WHERE app = $1 AND job_id = $2 ORDER BY attempt",
    )
    .bind(app)
    .bind(job_id)
    .fetch_all(pool)
    .await
}

/// One life of a job: how it ended (each dead letter ends one).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct LifeRow {
    /// 1, then +1 per replay.
    pub life: i32,
    /// The dead letter that ended it.
    pub dead_letter_id: i64,
    /// Why it ended.
    pub reason: String,
    /// Attempts made up to its end (counted across lives).
    pub attempts: i32,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// When it was replayed (started the next life), if it was.
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Every life of a job (its app and id) that ended in a dead letter, oldest first.
pub async fn lives(pool: &PgPool, job: Option<(&str, &str)>) -> Result<Vec<LifeRow>, sqlx::Error> {
    let Some((app, job_id)) = job else {
        return Ok(Vec::new());
    };
    sqlx::query_as(
        "SELECT life, id AS dead_letter_id, reason, attempts, created_at AS ended_at, replayed_at
         FROM dead_letters WHERE app = $1 AND job_id = $2 ORDER BY id",
    )
    .bind(app)
    .bind(job_id)
    .fetch_all(pool)
    .await
}

/// Marks a dead letter replayed.
pub async fn mark_replayed(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes dead letters older than `days` (a number past `i32` saturates, so it can never wrap
/// into a negative age that matches every row).
pub async fn purge(pool: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM dead_letters WHERE {OLDER_THAN}"
    )))
    .bind(days_arg(days))
    .execute(pool)
    .await?
    .rows_affected())
}

/// Dead letters older than `days`, as [`purge`] decides.
const OLDER_THAN: &str = "created_at < now() - make_interval(days => $1)";

fn days_arg(days: u32) -> i32 {
    i32::try_from(days).unwrap_or(i32::MAX)
}
