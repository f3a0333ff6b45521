//! The start-up check of `WXNOTIFY_SECRET_KEY`: one WARN when secrets are stored in plain text,
//! and a configuration error (exit code 2) when the key cannot open what is stored.

use sqlx::PgPool;
use wxnotify_core::at_rest::{OpenError, SECRET_KEY_VAR};
use wxnotify_core::config::{ConfigError, Settings};
use wxnotify_core::wechat::TokenError;

/// Checks the settings' secret codec against the stored access tokens and webhook secrets.
pub(crate) async fn check(pool: &PgPool, settings: &Settings) -> anyhow::Result<()> {
    let secrets = &settings.secrets;
    if !secrets.encrypts() {
        tracing::warn!(
            "{SECRET_KEY_VAR} is not set: access tokens and webhook secrets are stored in plain text"
        );
    }
    let opened = match wxnotify_core::wechat::check_stored_key(pool, secrets).await {
        Err(TokenError::Sealed(e)) => Err(e),
        Err(other) => return Err(other.into()),
        Ok(()) => match wxnotify_api::producer::webhooks::check_stored_key(pool, secrets).await {
            Err(wxnotify_api::producer::webhooks::StoreError::Secret(e)) => Err(e),
            Err(other) => return Err(other.into()),
            Ok(()) => Ok(()),
        },
    };
    opened.map_err(|e| config_error(&e).into())
}

/// The configuration error for a stored secret the key does not open; never holds a secret.
fn config_error(e: &OpenError) -> ConfigError {
    match e {
        OpenError::NoKey { .. } => ConfigError::Missing {
            name: SECRET_KEY_VAR.into(),
            hint: "Access tokens or webhook secrets are stored encrypted: set the key they were encrypted with.",
        },
        OpenError::WrongKey { .. } => ConfigError::Invalid {
            name: SECRET_KEY_VAR.into(),
            reason: e.to_string(),
            hint: "Set the key the stored secrets were encrypted with (every process needs the same key).",
        },
    }
}
