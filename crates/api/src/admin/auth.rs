//! Who may use the admin surface: bearer tokens from the configuration, two roles.
//!
//! - `WXNOTIFY_ADMIN_TOKEN`: role [`Role::Admin`] (reads and acts);
//! - `WXNOTIFY_VIEWER_TOKEN`: role [`Role::Viewer`] (reads only).
//!
//! With neither configured the admin surface is off and answers 404. A missing or wrong token is
//! 401; a viewer asking to act is 403. Tokens are compared in constant time (over their SHA-1
//! digests, so neither content nor length leaks through timing).
//!
//! Routes take a [`Principal`] (any role) or an [`AdminOnly`] (role admin) as an extractor; both
//! work on any router state from which an `Arc<AdminAuth>` can be taken (`FromRef`), so other
//! modules (e.g. campaigns) mount their admin routes behind the same check.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::admin::error::AdminError;

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

/// Who made a request: the role, and the name written in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What they may do.
    pub role: Role,
    /// How they came, for the audit trail: `api:admin`, `console:viewer`, …
    pub who: String,
}

impl Principal {
    /// Fails with 403 unless the role is admin.
    pub fn require_admin(&self) -> Result<(), AdminError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(AdminError::Forbidden(
                "the viewer role reads only; this needs the admin token".into(),
            )),
        }
    }
}

/// The configured admin and viewer tokens (digests only are kept).
pub struct AdminAuth {
    admin: Option<[u8; 20]>,
    viewer: Option<[u8; 20]>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("admin", &self.admin.is_some())
            .field("viewer", &self.viewer.is_some())
            .finish()
    }
}

fn digest(s: &str) -> [u8; 20] {
    Sha1::digest(s.as_bytes()).into()
}

impl AdminAuth {
    /// The tokens; empty ones count as not configured.
    pub fn new(admin: Option<&SecretString>, viewer: Option<&SecretString>) -> Self {
        let keep = |t: Option<&SecretString>| {
            t.map(|t| t.expose_secret().trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(|t| digest(&t))
        };
        AdminAuth {
            admin: keep(admin),
            viewer: keep(viewer),
        }
    }

    /// Whether any token is configured (else the admin surface is off).
    pub fn enabled(&self) -> bool {
        self.admin.is_some() || self.viewer.is_some()
    }

    /// The role of `presented`, if it is one of the tokens. Constant time in the token.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let d = digest(presented);
        let matches = |t: &Option<[u8; 20]>| t.is_some_and(|t| bool::from(t.ct_eq(&d)));
        // Both comparisons always run.
        let (admin, viewer) = (matches(&self.admin), matches(&self.viewer));
        if admin {
            Some(Role::Admin)
        } else if viewer {
            Some(Role::Viewer)
        } else {
            None
        }
    }

    /// The principal of a request's `Authorization: Bearer` header.
    pub fn authenticate(&self, parts: &Parts) -> Result<Principal, AdminError> {
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
            .ok_or(AdminError::Unauthorized)?;
        let role = self.role_of(token.trim()).ok_or(AdminError::Unauthorized)?;
        Ok(Principal {
            role,
            who: format!("api:{}", role.as_str()),
        })
    }
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<AdminAuth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Arc::<AdminAuth>::from_ref(state).authenticate(parts)
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
        let principal = Arc::<AdminAuth>::from_ref(state).authenticate(parts)?;
        principal.require_admin()?;
        Ok(AdminOnly(principal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_roles_and_nothing_else_does() {
        let auth = AdminAuth::new(Some(&"a-token".into()), Some(&"v-token".into()));
        assert_eq!(auth.role_of("a-token"), Some(Role::Admin));
        assert_eq!(auth.role_of("v-token"), Some(Role::Viewer));
        assert_eq!(auth.role_of("a-toke"), None);
        assert_eq!(auth.role_of(""), None);
        assert!(!format!("{auth:?}").contains("token\""));
    }

    #[test]
    fn no_token_configured_turns_the_surface_off() {
        let auth = AdminAuth::new(Some(&"  ".into()), None);
        assert!(!auth.enabled());
        assert_eq!(auth.role_of(""), None);
        assert_eq!(auth.role_of("  "), None);
    }
}
