//! The break-glass tokens of the environment: `WXNOTIFY_ADMIN_TOKEN` (role admin) and
//! `WXNOTIFY_VIEWER_TOKEN` (role viewer). Only their SHA-256 digests are kept; a presented token
//! is compared with both, in constant time, so neither content nor length leaks through timing.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Role;

/// The SHA-256 of a secret.
pub fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The configured environment tokens (digests only).
#[derive(Clone, Default)]
pub struct EnvTokens {
    admin: Option<[u8; 32]>,
    viewer: Option<[u8; 32]>,
}

impl std::fmt::Debug for EnvTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvTokens")
            .field("admin", &self.admin.is_some())
            .field("viewer", &self.viewer.is_some())
            .finish()
    }
}

impl EnvTokens {
    /// The tokens; empty ones count as not configured.
    pub fn new(admin: Option<&SecretString>, viewer: Option<&SecretString>) -> Self {
        let keep = |t: Option<&SecretString>| {
            t.map(|t| t.expose_secret().trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(|t| digest(&t))
        };
        EnvTokens {
            admin: keep(admin),
            viewer: keep(viewer),
        }
    }

    /// Whether either token is configured.
    pub fn any(&self) -> bool {
        self.admin.is_some() || self.viewer.is_some()
    }

    /// The role of `presented`, if it is one of the tokens. Constant time in the token.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let d = digest(presented);
        let matches = |t: &Option<[u8; 32]>| t.is_some_and(|t| bool::from(t.ct_eq(&d)));
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

    /// The digest of `role`'s token (what a session made with it keeps).
    pub fn digest_of(&self, role: Role) -> Option<[u8; 32]> {
        match role {
            Role::Admin => self.admin,
            Role::Viewer => self.viewer,
        }
    }

    /// Whether `stored` is still the digest of `role`'s token (a session made with a token that
    /// has since changed or been removed ends). Constant time.
    pub fn still_current(&self, role: Role, stored: &[u8]) -> bool {
        self.digest_of(role)
            .is_some_and(|d| stored.len() == d.len() && bool::from(d.ct_eq(stored)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_roles_and_nothing_else_does() {
        let t = EnvTokens::new(Some(&"a-token".into()), Some(&"v-token".into()));
        assert_eq!(t.role_of("a-token"), Some(Role::Admin));
        assert_eq!(t.role_of("v-token"), Some(Role::Viewer));
        assert_eq!(t.role_of("a-toke"), None);
        assert_eq!(t.role_of(""), None);
        assert!(!format!("{t:?}").contains("token\""));
        assert!(t.still_current(Role::Admin, &digest("a-token")));
        assert!(!t.still_current(Role::Admin, &digest("v-token")));
        let changed = EnvTokens::new(Some(&"another".into()), None);
        assert!(!changed.still_current(Role::Admin, &digest("a-token")));
        assert!(!changed.still_current(Role::Viewer, &digest("v-token")));
    }

    #[test]
    fn blank_tokens_are_not_configured() {
        let t = EnvTokens::new(Some(&"  ".into()), None);
        assert!(!t.any());
        assert_eq!(t.role_of(""), None);
        assert_eq!(t.role_of("  "), None);
    }
}
