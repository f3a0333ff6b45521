//! The webhooks of the apps (`app_webhooks`): set, remove, and the signing secrets, kept
//! through the process's [`SecretCodec`] (encrypted when `WXNOTIFY_SECRET_KEY` is set).

use base64::Engine;
use rand::RngCore;
use sqlx::PgPool;
use wxnotify_core::at_rest::{OpenError, Place, SecretCodec};
use wxnotify_core::domain::AppName;

/// The column of the signing secrets, for the [`SecretCodec`].
const SECRET_COLUMN: &str = "app_webhooks.secret";

/// Why a webhook could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres failed.
    #[error("the webhook table could not be used: {0}")]
    Db(#[from] sqlx::Error),
    /// The stored secret did not open (`WXNOTIFY_SECRET_KEY`).
    #[error("the webhook's signing secret could not be read")]
    Secret(#[from] OpenError),
}

/// Where the signing secret of `app` is stored.
pub(super) fn secret_place(app: &str) -> Place<'_> {
    Place {
        column: SECRET_COLUMN,
        app,
    }
}

/// Sets an app's webhook. A signing secret is made when the app had none (or `rotate`), and
/// returned: the only time it is shown. A kept secret is written again through `secrets`, so a
/// secret stored in plain text before `WXNOTIFY_SECRET_KEY` was set is encrypted now.
pub async fn set(
    pool: &PgPool,
    secrets: &SecretCodec,
    app: &AppName,
    url: &url::Url,
    send_sent: bool,
    rotate: bool,
) -> Result<Option<String>, StoreError> {
    let mut tx = pool.begin().await?;
    // One writer per app: the secret read here is the one written back.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('app_webhooks:' || $1))")
        .bind(app.as_str())
        .execute(&mut *tx)
        .await?;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT secret FROM app_webhooks WHERE app = $1")
            .bind(app.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    let kept = match stored {
        Some(s) if !rotate => Some(secrets.open(secret_place(app.as_str()), &s)?),
        _ => None,
    };
    let fresh = kept.is_none().then(new_secret);
    let secret = kept.as_deref().or(fresh.as_deref()).expect("kept or fresh");
    sqlx::query(
        "INSERT INTO app_webhooks (app, url, secret, send_sent) VALUES ($1, $2, $3, $4)
         ON CONFLICT (app) DO UPDATE
         SET url = EXCLUDED.url, send_sent = EXCLUDED.send_sent, secret = EXCLUDED.secret,
             updated_at = now()",
    )
    .bind(app.as_str())
    .bind(url.as_str())
    .bind(secrets.seal(secret_place(app.as_str()), secret))
    .bind(send_sent)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(fresh)
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
        "UPDATE webhook_outbox SET failed_at = now(), last_error = 'webhook removed', leased_until = NULL
         WHERE app = $1 AND delivered_at IS NULL AND failed_at IS NULL",
    )
    .bind(app.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Fails when a stored secret does not open with `secrets` (another key, or none while secrets
/// are encrypted): checked at start, so a wrong `WXNOTIFY_SECRET_KEY` stops the process at once.
pub async fn check_stored_key(pool: &PgPool, secrets: &SecretCodec) -> Result<(), StoreError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT app, secret FROM app_webhooks WHERE secret LIKE $1 ORDER BY updated_at DESC LIMIT 1",
    )
    .bind(SecretCodec::sealed_like())
    .fetch_optional(pool)
    .await?;
    if let Some((app, secret)) = row {
        secrets.open(secret_place(&app), &secret)?;
    }
    Ok(())
}

/// A fresh signing secret in the Standard Webhooks form: `whsec_` and 32 random bytes in
/// base64 (standard alphabet, padded).
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}
