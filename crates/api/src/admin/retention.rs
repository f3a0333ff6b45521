//! Dead-letter retention: `serve` purges dead letters older than `WXNOTIFY_DLQ_RETENTION_DAYS`
//! every hour (and once at start), and writes what it deleted to the audit trail.

use std::time::Duration;

use sqlx::PgPool;

use crate::admin::store::{self, AuditEntry};

/// How often the retention pass runs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// One pass: deletes dead letters older than `days`, audits it as `system`; returns how many.
pub async fn pass(pool: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    let deleted = wxnotify_services::dlq::purge(pool, days).await?;
    if deleted > 0 {
        store::audit_as(
            pool,
            "system:retention",
            "system",
            "system",
            &AuditEntry {
                action: "retention",
                filter: None,
                ids: None,
                affected: deleted as i64,
                dry_run: false,
                detail: serde_json::json!({ "older_than_days": days }),
            },
        )
        .await?;
    }
    Ok(deleted)
}

/// Runs [`pass`] every [`EVERY`], forever (abort the task to stop).
pub async fn run(pool: PgPool, days: u32) {
    let mut every = tokio::time::interval(EVERY);
    loop {
        every.tick().await;
        match pass(&pool, days).await {
            Ok(n) => tracing::info!(deleted = n, days, "dead-letter retention pass"),
            Err(e) => tracing::warn!(error = %e, "dead-letter retention pass failed"),
        }
    }
}
