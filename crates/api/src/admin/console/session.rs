//! Console sessions and CSRF.
//!
//! Logging in with a token creates a server-side session (`admin_sessions`, keyed by the SHA-1
//! of a random 256-bit value) and sets that value in an `HttpOnly; SameSite=Strict` cookie
//! scoped to `/admin`. Each session has its own CSRF token; every POST form carries it in a
//! hidden field and is refused (403) without it. The login form, before any session exists, uses
//! a double-submit token: a random value in a short-lived cookie and in the form.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha1::{Digest, Sha1};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::admin::AdminState;
use crate::admin::auth::{Principal, Role};

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
    hex::encode(Sha1::digest(token.as_bytes()))
}

/// Whether two secrets are equal, in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha1::digest(a.as_bytes()), Sha1::digest(b.as_bytes()));
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
    /// Who, for permissions and the audit trail (`console:admin`, `console:viewer`).
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

/// Creates a session for `role`; returns the cookie value.
pub async fn create(
    pool: &PgPool,
    role: Role,
    ttl: std::time::Duration,
) -> Result<String, sqlx::Error> {
    let token = random_token();
    sqlx::query(
        "INSERT INTO admin_sessions (token_hash, role, csrf, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(hash(&token))
    .bind(role.as_str())
    .bind(random_token())
    .bind(ttl.as_secs_f64())
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

async fn load(state: &AdminState, parts: &Parts) -> Result<Option<Session>, Response> {
    let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let token_hash = hash(token);
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT role, csrf FROM admin_sessions WHERE token_hash = $1 AND expires_at > now()",
    )
    .bind(&token_hash)
    .fetch_optional(state.pool())
    .await
    .map_err(|e| crate::admin::error::AdminError::from(e).into_response())?;
    let Some((role, csrf)) = row else {
        return Ok(None);
    };
    let Some(role) = Role::parse(&role) else {
        return Ok(None);
    };
    Ok(Some(Session {
        principal: Principal {
            role,
            who: format!("console:{}", role.as_str()),
        },
        csrf,
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
