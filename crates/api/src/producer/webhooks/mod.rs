//! Signed outcome webhooks per app: a job died, WeChat's receipt reported a failure, and (when
//! asked) a job was sent.
//!
//! Sends are never slowed by a webhook: triggers on `deliveries` (see the migration
//! `20261130000900_producer_api.sql`) add an event row to `webhook_outbox` in the transaction
//! that changes the ledger (one statement per ledger statement; nothing but a probe of the tiny
//! `app_webhooks` table when no app has a webhook), and [`run_dispatcher`], a task of
//! `wxnotify serve`, posts them.
//!
//! # Delivery
//!
//! Each app has a lane of its own (`lane.rs`): at most
//! [`WebhookOptions::per_app_concurrency`] posts in flight, each bounded by
//! [`WebhookOptions::timeout`], so a slow receiver delays only its own app. A lane claims only
//! what it can post at once, with `FOR UPDATE SKIP LOCKED` and a lease (`leased_until`, longer
//! than the timeout), so several `serve` processes never post one event twice, and the claims
//! of a process that crashed come back when their lease ends (`outbox.rs`). A failed post
//! (non-2xx, no answer in time) is retried with exponential backoff and jitter (backon), the
//! next attempt kept in the row (`next_attempt_at`) so retries survive restarts; after
//! [`WebhookOptions::max_attempts`] the event is marked failed.
//!
//! # Signature
//!
//! The Standard Webhooks format (`signature.rs`): `webhook-id` (the event's id, `msg_…`, the
//! same on every retry, also the body's `event_id`), `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` with the key of
//! the secret `whsec_<base64>`. See [`verify`]. Secrets are stored through the settings'
//! [`SecretCodec`](wxnotify_core::at_rest::SecretCodec) (`store.rs`).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

mod dispatch;
mod lane;
pub(crate) mod outbox;
mod post;
mod signature;
mod store;

pub use self::dispatch::run_dispatcher;
pub use self::signature::{
    EVENT_HEADER, ID_HEADER, LEGACY_DELIVERY_HEADER, LEGACY_SIGNATURE_HEADER, SIGNATURE_HEADER,
    Signed, TIMESTAMP_HEADER, sign, sign_legacy, verify,
};
pub use self::store::{StoreError, check_stored_key, remove, set};

/// How events are posted.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Delay before the first retry (then doubling, with jitter).
    pub min_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Attempts before an event is marked failed.
    pub max_attempts: u32,
    /// Time a receiver has to answer one post (connecting included); then the attempt failed.
    pub timeout: Duration,
    /// Posts in flight at once to one app's webhook, in one process.
    pub per_app_concurrency: usize,
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
            per_app_concurrency: 16,
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

#[cfg(test)]
mod tests {
    use super::*;

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
