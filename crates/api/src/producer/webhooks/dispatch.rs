//! The outbox dispatcher: claims due events from `webhook_outbox` (leased, `SKIP LOCKED`),
//! posts them signed, and records each outcome or the next attempt's time.

use futures::StreamExt;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::producer::webhooks::signature::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign};
use crate::producer::webhooks::{WebhookOptions, retry_delay};

/// The Postgres channel the outbox triggers notify.
const CHANNEL: &str = "wxnotify_webhooks";

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

/// Posts one event, signed; `Err` with a reason that never holds the URL.
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

/// Records a post's outcome: delivered, given up after the last attempt, or due again later.
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
