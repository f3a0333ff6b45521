//! The sessions a Mini Program login hands out (`"session"` in the answer of
//! `POST /v1/miniprogram/login`): an opaque token naming that app and person, with which the
//! Mini Program reports its person's subscribe choices (`POST /v1/miniprogram/subscriptions`).
//! Only the token's SHA-256 is stored (`mp_sessions`); a token is refused after
//! [`SESSION_TTL`].

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use wxnotify_core::domain::AppName;

/// How long a session token works.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::days(7);

/// Every session token starts with this, so it is told from an API key (`wxn_…`) at a glance.
pub const SESSION_PREFIX: &str = "wxs_";

/// A session handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The token (shown once, in the login's answer).
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Mints a session for `mp_openid` of `app` and stores its hash.
pub async fn create(
    pool: &PgPool,
    app: &AppName,
    mp_openid: &str,
) -> Result<NewSession, sqlx::Error> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!(
        "{SESSION_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let expires_at = Utc::now() + SESSION_TTL;
    sqlx::query(
        "INSERT INTO mp_sessions (token_sha256, app, mp_openid, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&token_hash(&token)[..])
    .bind(app.as_str())
    .bind(mp_openid)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(NewSession { token, expires_at })
}

/// The app and Mini Program openid of a live session token; `None` when unknown or expired.
pub async fn find(pool: &PgPool, token: &str) -> Result<Option<(AppName, String)>, sqlx::Error> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT app, mp_openid FROM mp_sessions WHERE token_sha256 = $1 AND expires_at > now()",
    )
    .bind(&token_hash(token)[..])
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(app, openid)| AppName::parse(app).ok().map(|app| (app, openid))))
}

/// Deletes expired sessions; returns how many.
pub async fn prune(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM mp_sessions WHERE expires_at < now()")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
