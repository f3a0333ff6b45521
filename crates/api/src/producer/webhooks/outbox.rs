//! The outbox rows (`webhook_outbox`) as the dispatcher sees them: which apps have events due,
//! claiming an app's due events under a lease, and recording an attempt's outcome.
//!
//! An event is due when it is neither delivered nor failed, its `next_attempt_at` has come and
//! no live lease holds it (`leased_until` unset or past). A claim takes due rows with
//! `FOR UPDATE SKIP LOCKED`, counts the attempt and sets the lease; the outcome is written only
//! while that attempt is still the row's (`attempts` unchanged), so a process whose lease
//! lapsed never overwrites the outcome of the one that took the event over.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::producer::webhooks::{WebhookOptions, retry_delay};

/// One claimed event, with its app's webhook.
#[derive(sqlx::FromRow)]
pub(super) struct Claimed {
    /// The outbox row.
    pub id: i64,
    /// The event's stable id.
    pub event_id: Uuid,
    /// `dead`, `receipt_failed` or `sent`.
    pub event: String,
    /// The body, without `event_id`.
    pub payload: Value,
    /// This attempt's number (counted at the claim).
    pub attempts: i32,
    /// The app.
    pub app: String,
    /// The app's webhook URL.
    pub url: String,
    /// The signing secret as stored (see `store`).
    pub secret: String,
}

impl Claimed {
    /// The `webhook-id` of the event (and the body's `event_id`): the same on every retry.
    pub fn webhook_id(&self) -> String {
        format!("msg_{}", self.event_id.simple())
    }
}

/// The apps with events due now.
pub(super) async fn due_apps(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT app FROM webhook_outbox
         WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
           AND (leased_until IS NULL OR leased_until <= now())",
    )
    .fetch_all(pool)
    .await
}

/// Claims up to `limit` due events of `app` for `lease`.
pub(super) async fn claim(
    pool: &PgPool,
    app: &str,
    limit: usize,
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE webhook_outbox o
         SET attempts = o.attempts + 1, leased_until = now() + $3 * interval '1 millisecond'
         FROM app_webhooks w
         WHERE w.app = o.app AND o.id IN (
             SELECT id FROM webhook_outbox
             WHERE app = $1 AND delivered_at IS NULL AND failed_at IS NULL
               AND next_attempt_at <= now() AND (leased_until IS NULL OR leased_until <= now())
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING o.id, o.event_id, o.event, o.payload, o.attempts, o.app, w.url, w.secret",
    )
    .bind(app)
    .bind(limit as i64)
    .bind(lease.as_millis() as i64)
    .fetch_all(pool)
    .await
}

/// Records an attempt's outcome: delivered, given up after the last attempt, or due again
/// after the retry delay. Nothing is written when the attempt is no longer the row's.
pub(super) async fn settle(
    pool: &PgPool,
    options: &WebhookOptions,
    event: &Claimed,
    result: Result<(), String>,
) -> Result<(), sqlx::Error> {
    let written = match result {
        Ok(()) => sqlx::query(
            "UPDATE webhook_outbox SET delivered_at = now(), last_error = NULL, leased_until = NULL
                 WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL AND failed_at IS NULL",
        )
        .bind(event.id)
        .bind(event.attempts)
        .execute(pool)
        .await?,
        Err(error) if event.attempts as u32 >= options.max_attempts => {
            tracing::warn!(id = event.id, app = %event.app, attempts = event.attempts, %error, "webhook event given up");
            sqlx::query(
                "UPDATE webhook_outbox SET failed_at = now(), last_error = $3, leased_until = NULL
                 WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL AND failed_at IS NULL",
            )
            .bind(event.id)
            .bind(event.attempts)
            .bind(error)
            .execute(pool)
            .await?
        }
        Err(error) => {
            let delay = retry_delay(options, event.attempts as u32);
            tracing::debug!(id = event.id, app = %event.app, attempts = event.attempts, ?delay, %error, "webhook post failed; retrying later");
            sqlx::query(
                "UPDATE webhook_outbox
                 SET next_attempt_at = now() + $3 * interval '1 millisecond', last_error = $4,
                     leased_until = NULL
                 WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL AND failed_at IS NULL",
            )
            .bind(event.id)
            .bind(event.attempts)
            .bind(delay.as_millis() as i64)
            .bind(error)
            .execute(pool)
            .await?
        }
    };
    if written.rows_affected() == 0 {
        tracing::warn!(id = event.id, app = %event.app, "webhook lease lapsed before the outcome was recorded; the event was taken over or removed");
    }
    Ok(())
}

/// Events waiting to be posted (neither delivered nor given up), and the age of the oldest in
/// seconds (0 when none waits).
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*),
                coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
         FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL",
    )
    .fetch_one(pool)
    .await
}

/// Sets `wxnotify_webhook_backlog` and `wxnotify_webhook_backlog_oldest_seconds`.
pub async fn export_backlog(pool: &PgPool) {
    match backlog(pool).await {
        Ok((waiting, oldest)) => {
            metrics::gauge!("wxnotify_webhook_backlog").set(waiting as f64);
            metrics::gauge!("wxnotify_webhook_backlog_oldest_seconds").set(oldest.max(0.0));
        }
        Err(e) => tracing::warn!(error = %e, "counting the webhook backlog failed"),
    }
}
