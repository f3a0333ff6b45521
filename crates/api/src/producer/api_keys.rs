//! Producer API keys, one or more per app: `wxnotify api-key create|list|revoke`, and the bearer
//! check of every `/v1/notifications` request.
//!
//! A key is `wxn_` followed by 43 base64url characters (256 random bits from the OS-seeded
//! CSPRNG). It is shown once, at creation; Postgres keeps only its SHA-256 (with this much
//! entropy a fast hash is safe: there is nothing to guess) and its first characters, so a key
//! can be recognised in `list` and revoked without being known.
//!
//! Unknown and revoked keys count per client address ([`crate::failures`], shared by all
//! `serve` processes): past [`crate::failures::API_KEY_FAILURES_PER_MINUTE`] a minute the
//! client is answered 429 with `Retry-After`, without a look-up.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::failures::TryKeys;
use crate::producer::api_error::ApiError;
use crate::producer::link::ProducerApi;
use wxnotify_core::domain::AppName;

/// What every key starts with (lets secret scanners find leaked keys).
pub const KEY_PREFIX: &str = "wxn_";
/// How many characters of a key (after [`KEY_PREFIX`]) are kept to recognise it.
const SHOWN_CHARS: usize = 8;

/// A key just created: the only time the key itself exists outside its holder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedKey {
    /// The key's id (for `revoke`).
    pub id: Uuid,
    /// The app it may send for.
    pub app: String,
    /// The key: give it to the producer; it is not stored and cannot be shown again.
    pub key: String,
    /// The key's first characters, as `list` shows them.
    pub prefix: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A key as `list` shows it (never the key itself).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct KeyRow {
    /// The key's id.
    pub id: Uuid,
    /// The app it may send for.
    pub app: String,
    /// Its first characters.
    pub prefix: String,
    /// A note given at creation.
    pub label: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key is refused (401).
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The SHA-256 of a key, as stored.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Creates a key for `app` (which must be in the `apps` table).
pub async fn create(
    pool: &PgPool,
    app: &AppName,
    label: Option<&str>,
) -> Result<CreatedKey, sqlx::Error> {
    let key = new_key();
    let id = Uuid::now_v7();
    let prefix = format!("{KEY_PREFIX}{}", &key[KEY_PREFIX.len()..][..SHOWN_CHARS]);
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO api_keys (id, app, key_sha256, prefix, label) VALUES ($1, $2, $3, $4, $5)
         RETURNING created_at",
    )
    .bind(id)
    .bind(app.as_str())
    .bind(&key_hash(&key)[..])
    .bind(&prefix)
    .bind(label)
    .fetch_one(pool)
    .await?;
    Ok(CreatedKey {
        id,
        app: app.to_string(),
        key,
        prefix,
        created_at,
    })
}

/// The keys (of one app, or all), oldest first.
pub async fn list(pool: &PgPool, app: Option<&AppName>) -> Result<Vec<KeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, app, prefix, label, created_at, revoked_at FROM api_keys
         WHERE $1::text IS NULL OR app = $1 ORDER BY created_at, id",
    )
    .bind(app.map(AppName::as_str))
    .fetch_all(pool)
    .await
}

/// Revokes a key by id; `false` when there is no such key or it was revoked already.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let n =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected();
    Ok(n == 1)
}

/// The key `key` is, if any: its id, its app and whether it was revoked.
pub async fn find_key(
    pool: &PgPool,
    key: &str,
) -> Result<Option<(Uuid, String, bool)>, sqlx::Error> {
    sqlx::query_as("SELECT id, app, revoked_at IS NOT NULL FROM api_keys WHERE key_sha256 = $1")
        .bind(&key_hash(key)[..])
        .fetch_optional(pool)
        .await
}

/// The caller of a producer API request: the key it presented and the app that key is for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id.
    pub key_id: Uuid,
    /// The only app this caller may send for or look at.
    pub app: AppName,
}

impl FromRequestParts<ProducerApi> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &ProducerApi,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("send the API key as `Authorization: Bearer wxn_…`".into())
        })?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| k.starts_with(KEY_PREFIX))
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the Authorization header must be `Bearer wxn_…` (an API key from `wxnotify api-key create`)".into(),
                )
            })?;
        // A client that sent too many unknown keys is refused before any look-up.
        let failures = api.key_failures();
        let keys = TryKeys::new(failures.client_of(parts), None);
        if let Some(wait) = failures.locked_here(&keys) {
            return Err(ApiError::TooManyFailures(wait));
        }
        let row = find_key(api.pool(), key)
            .await
            .map_err(ApiError::database)?;
        let refused = match row {
            None => "unknown API key: create one with `wxnotify api-key create --app NAME`",
            Some((_, _, true)) => {
                "this API key was revoked: use another key (`wxnotify api-key list`)"
            }
            Some((key_id, app, false)) => {
                api.check_key_rate(key_id)
                    .map_err(ApiError::TooManyRequests)?;
                let app = AppName::parse(app).map_err(ApiError::internal)?;
                return Ok(Caller { key_id, app });
            }
        };
        match failures.failed(api.pool(), &keys).await {
            Ok(Some(wait)) => Err(ApiError::TooManyFailures(wait)),
            Ok(None) => Err(ApiError::Unauthorized(refused.into())),
            Err(e) => Err(ApiError::database(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_prefixed() {
        let a = new_key();
        let b = new_key();
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_ne!(key_hash(&a), key_hash(&b));
    }
}
