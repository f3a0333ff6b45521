//! Named admins (`admin_users`): one personal token per person, with a role, for the admin API
//! (`Authorization: Bearer wxa_…`) and the console's login. `wxnotify admin-user
//! add|list|disable|rotate` manages them.
//!
//! A token is `wxa_` followed by 43 base64url characters (256 random bits). It is shown once,
//! by `add` and `rotate`; Postgres keeps its SHA-256 and its first characters. A rotation
//! raises the user's generation and a disable sets `disabled_at`: either ends the user's
//! console sessions at their next request (the session check compares both).

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::admin::auth::Role;

/// What every personal token starts with (lets secret scanners find leaked tokens).
pub const TOKEN_PREFIX: &str = "wxa_";
/// How many characters after [`TOKEN_PREFIX`] are kept to recognise a token.
const SHOWN_CHARS: usize = 6;

/// Why an admin-user change was refused; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is not a plain name.
    #[error(
        "{0:?} is not a valid admin name: use 1 to 64 ASCII letters, digits, '.', '_', '-' or '@', starting with a letter or digit (e.g. alice or alice@example.com)"
    )]
    BadName(String),
    /// The name is taken.
    #[error(
        "an admin user named {0:?} exists already: pick another name, or `wxnotify admin-user rotate {0}` for a new token"
    )]
    Exists(String),
    /// No such user.
    #[error("no admin user named {0:?}: `wxnotify admin-user list` shows them")]
    Unknown(String),
    /// The user is disabled.
    #[error(
        "admin user {0:?} is disabled; a disabled user stays disabled: add the person again under another name"
    )]
    Disabled(String),
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A token just made (by `add` or `rotate`): the only time it exists outside its holder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedToken {
    /// The user.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// The token: give it to the person; it is not stored and cannot be shown again.
    pub token: String,
    /// Its first characters, as `list` shows them.
    pub token_prefix: String,
    /// The token's generation (1 at `add`, raised by every rotation).
    pub generation: i32,
}

/// A user as `list` shows it (never the token).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct UserRow {
    /// The name.
    pub name: String,
    /// `admin` or `viewer`.
    pub role: String,
    /// The token's first characters.
    pub token_prefix: String,
    /// The token's generation.
    pub generation: i32,
    /// When the user was added.
    pub created_at: DateTime<Utc>,
    /// When the token was last rotated.
    pub rotated_at: Option<DateTime<Utc>>,
    /// When the user was disabled (their token and sessions are refused).
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A user a presented token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    /// The name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The generation of the token.
    pub generation: i32,
}

/// The SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn shown(token: &str) -> String {
    token
        .chars()
        .take(TOKEN_PREFIX.len() + SHOWN_CHARS)
        .collect()
}

/// Fails unless `name` is a plain name (the same rule as the table's check).
pub fn check_name(name: &str) -> Result<(), UserError> {
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
        && name.len() <= 64;
    if plain {
        Ok(())
    } else {
        Err(UserError::BadName(name.to_owned()))
    }
}

/// Adds a user with `role` and a new token.
pub async fn add(pool: &PgPool, name: &str, role: Role) -> Result<IssuedToken, UserError> {
    check_name(name)?;
    let token = new_token();
    let inserted = sqlx::query(
        "INSERT INTO admin_users (name, role, token_sha256, token_prefix) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(&token_hash(&token)[..])
    .bind(shown(&token))
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(UserError::Exists(name.to_owned()));
    }
    Ok(IssuedToken {
        name: name.to_owned(),
        role,
        token_prefix: shown(&token),
        token,
        generation: 1,
    })
}

/// Every user, by name.
pub async fn list(pool: &PgPool) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, role, token_prefix, generation, created_at, rotated_at, disabled_at
         FROM admin_users ORDER BY name",
    )
    .fetch_all(pool)
    .await
}

/// Disables a user: their token is refused and their sessions end, from the next request.
/// `false` when they were disabled already.
pub async fn disable(pool: &PgPool, name: &str) -> Result<bool, UserError> {
    let mut tx = pool.begin().await?;
    let was: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT disabled_at FROM admin_users WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    match was {
        None => return Err(UserError::Unknown(name.to_owned())),
        Some(Some(_)) => return Ok(false),
        Some(None) => {}
    }
    sqlx::query("UPDATE admin_users SET disabled_at = now() WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    end_sessions(&mut tx, name).await?;
    tx.commit().await?;
    Ok(true)
}

/// Gives a user a new token (the old one is refused at once, and their sessions end).
pub async fn rotate(pool: &PgPool, name: &str) -> Result<IssuedToken, UserError> {
    let token = new_token();
    let mut tx = pool.begin().await?;
    let row: Option<(String, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT role, disabled_at FROM admin_users WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    let role = match row {
        None => return Err(UserError::Unknown(name.to_owned())),
        Some((_, Some(_))) => return Err(UserError::Disabled(name.to_owned())),
        Some((role, None)) => Role::parse(&role).unwrap_or(Role::Viewer),
    };
    let generation: i32 = sqlx::query_scalar(
        "UPDATE admin_users SET token_sha256 = $2, token_prefix = $3, generation = generation + 1,
                rotated_at = now()
         WHERE name = $1 RETURNING generation",
    )
    .bind(name)
    .bind(&token_hash(&token)[..])
    .bind(shown(&token))
    .fetch_one(&mut *tx)
    .await?;
    end_sessions(&mut tx, name).await?;
    tx.commit().await?;
    Ok(IssuedToken {
        name: name.to_owned(),
        role,
        token_prefix: shown(&token),
        token,
        generation,
    })
}

/// The enabled user whose token is `token` (looked up by its SHA-256: the index compares
/// digests, so the token's content does not leak through timing).
pub async fn owner_of(pool: &PgPool, token: &str) -> Result<Option<TokenOwner>, sqlx::Error> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let row: Option<(String, String, i32)> = sqlx::query_as(
        "SELECT name, role, generation FROM admin_users
         WHERE token_sha256 = $1 AND disabled_at IS NULL",
    )
    .bind(&token_hash(token)[..])
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(name, role, generation)| {
        Some(TokenOwner {
            name,
            role: Role::parse(&role)?,
            generation,
        })
    }))
}

/// Whether any enabled user exists (with no environment token, the surface is on only then).
pub async fn any(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM admin_users WHERE disabled_at IS NULL)")
        .fetch_one(pool)
        .await
}

/// Ends every console session of user `name` (in the transaction that disables or rotates it).
async fn end_sessions(tx: &mut sqlx::PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM admin_sessions WHERE admin_user = $1")
        .bind(name)
        .execute(tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let (a, b) = (new_token(), new_token());
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_eq!(shown(&a).len(), TOKEN_PREFIX.len() + SHOWN_CHARS);
    }

    #[test]
    fn names_are_plain() {
        for ok in ["alice", "alice@example.com", "ops-1", "B.b_2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "env:admin", "a b", &"x".repeat(65), "名字"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
