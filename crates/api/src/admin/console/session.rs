//! Console sessions and CSRF.
//!
//! Logging in with a token creates a server-side session (`admin_sessions`, keyed by the SHA-256
//! of a random 256-bit value) and sets that value in an `HttpOnly; SameSite=Strict` cookie
//! scoped to `/admin`. Each session has its own CSRF token; every POST form carries it in a
//! hidden field and is refused (403) without it. The login form, before any session exists, uses
//! a double-submit token: a random value in a short-lived cookie and in the form.
//!
//! A session dies with what made it, checked at every request: a named admin's session names
//! the user and their token's generation (disabling the user or rotating the token ends it); a
//! break-glass session keeps the SHA-256 of the environment token that made it (changing or
//! removing that token ends it).

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::admin::AdminState;
use crate::admin::auth::{Credential, EnvTokens, Principal, Role};

/// The session cookie.
pub const SESSION_COOKIE: &str = "wxn_session";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "wxn_login";
/// Default session lifetime.
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// A random 256-bit value, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether two secrets are equal, in constant time (over their SHA-256 digests, so neither
/// content nor length leaks).
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(a.ct_eq(&b))
}

/// The value of cookie `name` in `headers`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/admin; Secure when the request came
/// over HTTPS (as a TLS-terminating proxy says with `X-Forwarded-Proto`).
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age_secs: u64) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    format!(
        "{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// A logged-in console user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who, for permissions and the audit trail (`console:admin`, `console:viewer`, and the
    /// person).
    pub principal: Principal,
    /// The form token of this session.
    pub csrf: String,
    token_hash: String,
}

impl Session {
    /// Whether the user may act (sees buttons that change things).
    pub fn is_admin(&self) -> bool {
        self.principal.role == Role::Admin
    }

    /// Fails with 403 unless `presented` is this session's CSRF token.
    pub fn check_csrf(
        &self,
        presented: Option<&str>,
    ) -> Result<(), crate::admin::console::PageError> {
        match presented {
            Some(p) if same_secret(p, &self.csrf) => Ok(()),
            _ => Err(crate::admin::console::pages::refused(
                "This form has expired or did not come from the console (CSRF token missing or wrong). Go back, reload the page and try again.",
            )
            .into()),
        }
    }
}

/// Creates a session for `credential` (tied to the user and their token's generation, or to
/// the environment token's digest); returns the cookie value.
pub async fn create(
    pool: &PgPool,
    credential: &Credential,
    env: &EnvTokens,
    ttl: std::time::Duration,
) -> Result<String, sqlx::Error> {
    let token = random_token();
    let (user, generation, env_digest) = match credential {
        Credential::User(owner) => (Some(owner.name.as_str()), Some(owner.generation), None),
        Credential::Env(role) => (None, None, env.digest_of(*role).map(|d| d.to_vec())),
    };
    sqlx::query(
        "INSERT INTO admin_sessions
             (token_hash, role, csrf, expires_at, admin_user, token_generation, env_token_sha256)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6, $7)",
    )
    .bind(hash(&token))
    .bind(credential.role().as_str())
    .bind(random_token())
    .bind(ttl.as_secs_f64())
    .bind(user)
    .bind(generation)
    .bind(env_digest)
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM admin_sessions WHERE expires_at < now()")
        .execute(pool)
        .await?;
    Ok(token)
}

/// Ends a session.
pub async fn destroy(pool: &PgPool, session: &Session) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
        .bind(&session.token_hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// A session row as stored, with its user's state.
#[derive(sqlx::FromRow)]
struct SessionRow {
    role: String,
    csrf: String,
    admin_user: Option<String>,
    env_token_sha256: Option<Vec<u8>>,
    /// The user's current role, when the user is enabled and the token generation matches.
    user_role: Option<String>,
}

async fn load(state: &AdminState, parts: &Parts) -> Result<Option<Session>, Response> {
    let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let token_hash = hash(token);
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT s.role, s.csrf, s.admin_user, s.env_token_sha256, u.role AS user_role
         FROM admin_sessions s
         LEFT JOIN admin_users u
           ON u.name = s.admin_user AND u.disabled_at IS NULL
          AND u.generation = s.token_generation
         WHERE s.token_hash = $1 AND s.expires_at > now()",
    )
    .bind(&token_hash)
    .fetch_optional(state.pool())
    .await
    .map_err(|e| crate::admin::error::AdminError::from(e).into_response())?;
    let Some(row) = row else {
        return Ok(None);
    };
    let principal = match (&row.admin_user, &row.user_role, &row.env_token_sha256) {
        // A named admin's session: the user is enabled and the token not rotated since.
        (Some(name), Some(role), _) => Role::parse(role).map(|role| Principal {
            role,
            who: format!("console:{}", role.as_str()),
            actor: name.clone(),
        }),
        // A break-glass session: the environment token that made it is still the same.
        (None, _, Some(digest)) => Role::parse(&row.role)
            .filter(|role| state.auth().env().still_current(*role, digest))
            .map(|role| Credential::Env(role).principal("console")),
        // Disabled, rotated, or a session of an older kind.
        _ => None,
    };
    Ok(principal.map(|principal| Session {
        principal,
        csrf: row.csrf,
        token_hash,
    }))
}

impl FromRequestParts<AdminState> for Session {
    type Rejection = Response;

    /// The session, or a redirect to the login page.
    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Response> {
        load(state, parts)
            .await?
            .ok_or_else(|| Redirect::to("/admin/login").into_response())
    }
}

impl OptionalFromRequestParts<AdminState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Option<Self>, Response> {
        load(state, parts).await
    }
}
