//! Who may use the admin surface, with two roles:
//!
//! - **named admins** ([`crate::admin::users`]): a personal token each (`wxa_…`), role admin or
//!   viewer, recorded by name in the audit trail;
//! - **break-glass tokens** of the environment ([`env_tokens`]): `WXNOTIFY_ADMIN_TOKEN` (role
//!   admin) and `WXNOTIFY_VIEWER_TOKEN` (role viewer), recorded as `env:admin` / `env:viewer`.
//!
//! With no environment token and no admin user when `serve` starts, the admin surface is off and
//! answers 404. A missing or wrong token is 401; a viewer asking to act is 403. Failed tries are
//! limited per client address and token prefix across all `serve` processes
//! ([`crate::failures`]): past the limit, 429 with `Retry-After`, even for a right token.
//!
//! Routes take a [`Principal`] (any role) or an [`AdminOnly`] (role admin) as an extractor; both
//! work on any router state from which an `Arc<AdminAuth>` can be taken (`FromRef`), so other
//! modules (e.g. campaigns) mount their admin routes behind the same check.

pub mod env_tokens;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sqlx::PgPool;

use crate::admin::error::AdminError;
use crate::admin::users::{self, TokenOwner};
use crate::failures::{FailureLimiter, TryKeys};
pub use env_tokens::EnvTokens;

/// A role of the admin surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads and acts (replay, purge, pause, resume).
    Admin,
    /// Reads only.
    Viewer,
}

impl Role {
    /// `admin` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// What a presented token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A break-glass environment token of this role.
    Env(Role),
    /// A named admin's personal token.
    User(TokenOwner),
}

impl Credential {
    /// The role it grants.
    pub fn role(&self) -> Role {
        match self {
            Credential::Env(role) => *role,
            Credential::User(owner) => owner.role,
        }
    }

    /// The person, for the audit trail: the admin's name, or `env:admin` / `env:viewer`.
    pub fn actor(&self) -> String {
        match self {
            Credential::Env(role) => format!("env:{}", role.as_str()),
            Credential::User(owner) => owner.name.clone(),
        }
    }

    /// The principal of a request made with it through `via` (`api` or `console`).
    pub fn principal(&self, via: &str) -> Principal {
        let role = self.role();
        Principal {
            role,
            who: format!("{via}:{}", role.as_str()),
            actor: self.actor(),
        }
    }
}

/// Who made a request: the role, how they came and the person, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What they may do.
    pub role: Role,
    /// How they came: `api:admin`, `console:viewer`, …
    pub who: String,
    /// The person: an admin user's name, or `env:admin` / `env:viewer`.
    pub actor: String,
}

impl Principal {
    /// Fails with 403 unless the role is admin.
    pub fn require_admin(&self) -> Result<(), AdminError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(AdminError::Forbidden(
                "the viewer role reads only; this needs an admin token".into(),
            )),
        }
    }
}

/// The tokens of the admin surface: the environment's and the named admins' (in Postgres),
/// and the limit on failed tries.
pub struct AdminAuth {
    env: EnvTokens,
    users_at_start: bool,
    pool: PgPool,
    failures: Arc<FailureLimiter>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("env", &self.env)
            .field("users_at_start", &self.users_at_start)
            .finish()
    }
}

impl AdminAuth {
    /// The check of `env` tokens and the admin users of `pool`; `users_at_start` says whether
    /// admin users existed when the process started (with no environment token, the surface is
    /// on only then).
    pub fn new(
        pool: PgPool,
        env: EnvTokens,
        users_at_start: bool,
        failures: Arc<FailureLimiter>,
    ) -> Self {
        AdminAuth {
            env,
            users_at_start,
            pool,
            failures,
        }
    }

    /// Whether the admin surface is on (a token configured, or admin users at start).
    pub fn enabled(&self) -> bool {
        self.env.any() || self.users_at_start
    }

    /// The environment tokens.
    pub fn env(&self) -> &EnvTokens {
        &self.env
    }

    /// The limit on failed tries (shared with the console's login).
    pub fn failures(&self) -> &FailureLimiter {
        &self.failures
    }

    /// What `token` is: an environment token (constant time), else an enabled admin user's.
    pub async fn credential(&self, token: &str) -> Result<Option<Credential>, sqlx::Error> {
        if let Some(role) = self.env.role_of(token) {
            return Ok(Some(Credential::Env(role)));
        }
        Ok(users::owner_of(&self.pool, token)
            .await?
            .map(Credential::User))
    }

    /// Checks `token` from `keys`' client: 429 while they are locked (before the token is
    /// looked at), the credential when it is one, else the failure counted and 401 (or 429 past
    /// the limit).
    pub async fn check(&self, token: &str, keys: &TryKeys) -> Result<Credential, AdminError> {
        if let Some(wait) = self.failures.locked(&self.pool, keys).await? {
            return Err(AdminError::TooManyTries(wait));
        }
        if let Some(credential) = self.credential(token).await? {
            return Ok(credential);
        }
        match self.failures.failed(&self.pool, keys).await? {
            Some(wait) => Err(AdminError::TooManyTries(wait)),
            None => Err(AdminError::Unauthorized),
        }
    }

    /// The principal of a request's `Authorization: Bearer` header.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Principal, AdminError> {
        if !self.enabled() {
            return Err(AdminError::Off);
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(AdminError::Unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AdminError::Unauthorized)?
            .trim();
        let keys = TryKeys::new(self.failures.client_of(parts), Some(token));
        Ok(self.check(token, &keys).await?.principal("api"))
    }
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<AdminAuth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Arc::<AdminAuth>::from_ref(state).authenticate(parts).await
    }
}

/// A principal with role admin (403 for a viewer): the extractor of every route that acts.
#[derive(Debug, Clone)]
pub struct AdminOnly(pub Principal);

impl<S> FromRequestParts<S> for AdminOnly
where
    Arc<AdminAuth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = Arc::<AdminAuth>::from_ref(state)
            .authenticate(parts)
            .await?;
        principal.require_admin()?;
        Ok(AdminOnly(principal))
    }
}
