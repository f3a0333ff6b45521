//! Signed outcome webhooks per app: a job died, WeChat's receipt reported a failure, and (when
//! asked) a job was sent.
//!
//! Sends are never slowed by a webhook: triggers on `deliveries` (see the migration
//! `20261130000900_producer_api.sql`) add an event row to `webhook_outbox` in the transaction
//! that changes the ledger (one statement per ledger statement; nothing but a probe of the tiny
//! `app_webhooks` table when no app has a webhook), and [`run_dispatcher`], a task of
//! `wxnotify serve`, posts them. Each event is posted until the receiver answers 2xx, with
//! exponential backoff and jitter (backon) kept in the row (`next_attempt_at`), so retries
//! survive restarts; several `serve` processes share the work (`FOR UPDATE SKIP LOCKED` and a
//! lease). After [`WebhookOptions::max_attempts`] the event is marked failed.
//!
//! # Signature
//!
//! `Wxnotify-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A
//! receiver recomputes it over the raw body, compares in constant time, and refuses timestamps
//! more than a few minutes old (replays). `Wxnotify-Delivery` (the event's id, the same on
//! every retry) lets it drop repeats. See [`verify`].

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use base64::Engine;
use rand::RngCore;
use sqlx::PgPool;

mod dispatch;
mod signature;

pub use self::dispatch::{drain_once, run_dispatcher};
pub use self::signature::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign, verify};
use wxnotify_core::domain::AppName;

/// How events are posted.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Delay before the first retry (then doubling, with jitter).
    pub min_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Attempts before an event is marked failed.
    pub max_attempts: u32,
    /// Time a receiver has to answer.
    pub timeout: Duration,
    /// Events claimed at once.
    pub batch: i64,
    /// Posts in flight at once.
    pub concurrency: usize,
    /// Poll interval when no notification wakes the dispatcher (and for retries coming due).
    pub idle_poll: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            min_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
            max_attempts: 12,
            timeout: Duration::from_secs(10),
            batch: 100,
            concurrency: 16,
            idle_poll: Duration::from_secs(1),
        }
    }
}

/// The delay before attempt `attempt + 1`, after `attempt` failed ones (backon's exponential
/// backoff with jitter).
pub fn retry_delay(options: &WebhookOptions, attempt: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(options.min_delay)
        .with_max_delay(options.max_delay)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(options.max_attempts as usize)
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(options.max_delay)
}

/// Sets an app's webhook. A signing secret is made when the app had none (or `rotate`), and
/// returned: the only time it is shown.
pub async fn set(
    pool: &PgPool,
    app: &AppName,
    url: &url::Url,
    send_sent: bool,
    rotate: bool,
) -> Result<Option<String>, sqlx::Error> {
    let fresh = new_secret();
    let stored: String = sqlx::query_scalar(
        "INSERT INTO app_webhooks (app, url, secret, send_sent) VALUES ($1, $2, $3, $4)
         ON CONFLICT (app) DO UPDATE
         SET url = EXCLUDED.url, send_sent = EXCLUDED.send_sent, updated_at = now(),
             secret = CASE WHEN $5 THEN EXCLUDED.secret ELSE app_webhooks.secret END
         RETURNING secret",
    )
    .bind(app.as_str())
    .bind(url.as_str())
    .bind(&fresh)
    .bind(send_sent)
    .bind(rotate)
    .fetch_one(pool)
    .await?;
    Ok((stored == fresh).then_some(fresh))
}

/// Removes an app's webhook; its undelivered events are marked failed.
pub async fn remove(pool: &PgPool, app: &AppName) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query("DELETE FROM app_webhooks WHERE app = $1")
        .bind(app.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "UPDATE webhook_outbox SET failed_at = now(), last_error = 'webhook removed'
         WHERE app = $1 AND delivered_at IS NULL AND failed_at IS NULL",
    )
    .bind(app.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n == 1)
}

/// A fresh signing secret: `whsec_` and 32 random bytes (base64url).
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let header = sign("whsec_a", 1_700_000_000, b"{\"x\":1}");
        let ok = |h: &str, body: &[u8], secret: &str, now: i64| {
            verify(secret, h, body, now, Duration::from_secs(300))
        };
        assert!(ok(&header, b"{\"x\":1}", "whsec_a", 1_700_000_010));
        assert!(!ok(&header, b"{\"x\":2}", "whsec_a", 1_700_000_010));
        assert!(!ok(&header, b"{\"x\":1}", "whsec_b", 1_700_000_010));
        assert!(!ok(&header, b"{\"x\":1}", "whsec_a", 1_700_001_000));
        assert!(!ok("t=1,v1=zz", b"", "whsec_a", 1));
    }

    #[test]
    fn retry_delays_grow_and_stay_bounded() {
        let options = WebhookOptions {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            ..WebhookOptions::default()
        };
        let first = retry_delay(&options, 1);
        let fifth = retry_delay(&options, 5);
        assert!(
            first >= Duration::from_secs(1) && first <= Duration::from_secs(2),
            "{first:?}"
        );
        assert!(fifth >= Duration::from_secs(16), "{fifth:?}");
        assert!(retry_delay(&options, 40) <= Duration::from_secs(120));
    }
}
