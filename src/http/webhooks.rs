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
use futures::StreamExt;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::Value;
use sha2::Sha256;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::AppName;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "Wxnotify-Signature";
/// The event's id: the same on every retry of one event.
pub const DELIVERY_HEADER: &str = "Wxnotify-Delivery";
/// The event's kind: `dead`, `receipt_failed` or `sent`.
pub const EVENT_HEADER: &str = "Wxnotify-Event";
/// The Postgres channel the outbox triggers notify.
const CHANNEL: &str = "wxnotify_webhooks";

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

/// The signature header's value for `body` at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks a signature header against `body`, as a receiver does: the MAC (constant-time) and a
/// timestamp within `tolerance` of `now` (unix seconds).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: Duration) -> bool {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signature = hex::decode(s).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(sig)) = (timestamp, signature) else {
        return false;
    };
    if (now - t).unsigned_abs() > tolerance.as_secs() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
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

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// One claimed event.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    event: String,
    payload: Value,
    attempts: i32,
    url: String,
    secret: String,
}

/// Posts outbox events until `shutdown`; woken by the triggers' notifications, polling every
/// [`WebhookOptions::idle_poll`] as well.
pub async fn run_dispatcher(pool: PgPool, options: WebhookOptions, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wxnotify-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client could not be built; webhooks are off");
            return;
        }
    };
    let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
        Ok(mut l) => match l.listen(CHANNEL).await {
            Ok(()) => Some(l),
            Err(_) => None,
        },
        Err(_) => None,
    };
    loop {
        let posted = match drain_once(&pool, &client, &options).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "webhook outbox unavailable");
                0
            }
        };
        if posted > 0 {
            continue;
        }
        let wake = async {
            match listener.as_mut() {
                Some(l) => {
                    if l.recv().await.is_err() {
                        tokio::time::sleep(options.idle_poll).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake => {}
            _ = tokio::time::sleep(options.idle_poll) => {}
        }
    }
}

/// Claims the due events and posts them; returns how many were claimed.
pub async fn drain_once(
    pool: &PgPool,
    client: &reqwest::Client,
    options: &WebhookOptions,
) -> Result<usize, sqlx::Error> {
    // The lease: a claimed event is not claimed again while its post may still be running.
    let lease_ms = (options.timeout.as_millis() as i64) * 2 + 1000;
    let claimed: Vec<Claimed> = sqlx::query_as(
        "UPDATE webhook_outbox o
         SET attempts = o.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond'
         FROM app_webhooks w
         WHERE w.app = o.app AND o.id IN (
             SELECT id FROM webhook_outbox
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING o.id, o.event, o.payload, o.attempts, w.url, w.secret",
    )
    .bind(options.batch)
    .bind(lease_ms)
    .fetch_all(pool)
    .await?;
    let n = claimed.len();
    futures::stream::iter(claimed)
        .for_each_concurrent(options.concurrency, |event| async move {
            let result = post(client, &event).await;
            if let Err(e) = settle(pool, options, &event, result).await {
                tracing::warn!(error = %e, id = event.id, "webhook outcome not recorded; it will be posted again");
            }
        })
        .await;
    Ok(n)
}

async fn post(client: &reqwest::Client, event: &Claimed) -> Result<(), String> {
    let body = serde_json::to_vec(&event.payload).map_err(|e| e.to_string())?;
    let now = chrono::Utc::now().timestamp();
    let response = client
        .post(&event.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(&event.secret, now, &body))
        .header(DELIVERY_HEADER, event.id.to_string())
        .header(EVENT_HEADER, &event.event)
        .body(body)
        .send()
        .await
        // Without the URL: it may hold a token of the receiver's.
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {}", status.as_u16()))
    }
}

async fn settle(
    pool: &PgPool,
    options: &WebhookOptions,
    event: &Claimed,
    result: Result<(), String>,
) -> Result<(), sqlx::Error> {
    match result {
        Ok(()) => {
            sqlx::query(
                "UPDATE webhook_outbox SET delivered_at = now(), last_error = NULL WHERE id = $1",
            )
            .bind(event.id)
            .execute(pool)
            .await?;
        }
        Err(error) if event.attempts as u32 >= options.max_attempts => {
            tracing::warn!(id = event.id, attempts = event.attempts, %error, "webhook event given up");
            sqlx::query(
                "UPDATE webhook_outbox SET failed_at = now(), last_error = $2 WHERE id = $1",
            )
            .bind(event.id)
            .bind(error)
            .execute(pool)
            .await?;
        }
        Err(error) => {
            let delay = retry_delay(options, event.attempts as u32);
            tracing::debug!(id = event.id, attempts = event.attempts, ?delay, %error, "webhook post failed; retrying later");
            sqlx::query(
                "UPDATE webhook_outbox
                 SET next_attempt_at = now() + $2 * interval '1 millisecond', last_error = $3
                 WHERE id = $1",
            )
            .bind(event.id)
            .bind(delay.as_millis() as i64)
            .bind(error)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
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
