//! A dead job's new life when ops replay it, and its undoing when the publish fails.

use sqlx::PgPool;
use wxnotify_core::domain::Job;

/// Re-opens the ledger row of a dead job so its replay is accepted: a new life. Attempts keep
/// counting (their numbers stay unique in the history); the retry policy counts from the new
/// life's start. An `outcome_unknown` job replayed by ops is sent again: the uncertainty is
/// theirs to have weighed. The new life chooses its channel afresh (the mark of a subscribe
/// send is dropped; the grant that send used stays used).
pub async fn reopen(pool: &PgPool, job: &Job) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries
         SET state = 'retrying', dead_reason = NULL, life = life + 1, life_attempts_base = attempts,
             uncertain_since = NULL, claim_id = NULL, claimed_until = NULL, updated_at = now(),
             channel = NULL, mp_openid = NULL, mp_template_id = NULL
         WHERE app = $2 AND job_id = $1 AND state = 'dead'",
    )
    .bind(job.id.as_str())
    .bind(job.app.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

/// Undoes [`reopen`] when the publish failed.
pub async fn close_again(pool: &PgPool, job: &Job, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = 'dead', dead_reason = $2, life = life - 1, updated_at = now()
         WHERE app = $3 AND job_id = $1 AND state = 'retrying' AND claim_id IS NULL",
    )
    .bind(job.id.as_str())
    .bind(reason)
    .bind(job.app.as_str())
    .execute(pool)
    .await?;
    Ok(())
}
