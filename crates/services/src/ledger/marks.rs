//! Marks set on a claimed job's row before or instead of its send: a cancelled campaign's job,
//! and the truncation a job asked for.

use sqlx::PgPool;
use wxnotify_core::domain::Job;

use super::state::LedgerState;

/// Marks the job's ledger row `cancelled` (it was claimed just before; its campaign was
/// cancelled).
pub async fn record_cancelled(pool: &PgPool, job: &Job) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = $2, updated_at = now()
         WHERE app = $3 AND job_id = $1 AND state IN ('sending', 'retrying')",
    )
    .bind(job.id.as_str())
    .bind(LedgerState::Cancelled.as_str())
    .bind(job.app.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

/// Records on the job's row which fields the template check truncated (`record`, JSON), before
/// the truncated message is sent.
pub async fn record_truncation(
    pool: &PgPool,
    job: &Job,
    record: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET truncated = $2, updated_at = now() WHERE app = $3 AND job_id = $1",
    )
    .bind(job.id.as_str())
    .bind(record)
    .bind(job.app.as_str())
    .execute(pool)
    .await?;
    Ok(())
}
