//! Access tokens: `cgi-bin/token` (classic) and `cgi-bin/stable_token`. A token is a secret:
//! compared by value, never printed.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{WechatClient, WechatError};
use crate::domain::AppId;

/// An access token. Compared by value (for compare-and-swap), never printed.
#[derive(Clone)]
pub struct AccessToken(SecretString);

impl AccessToken {
    /// Wraps a token string.
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }
    /// The token, for the query string and the token table only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for AccessToken {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(REDACTED)")
    }
}

/// A freshly fetched token and how long WeChat says it lives.
#[derive(Debug, Clone)]
pub struct FetchedToken {
    /// The token.
    pub token: AccessToken,
    /// `expires_in` as returned (never assume 7200).
    pub expires_in: Duration,
}

impl WechatClient {
    /// `GET cgi-bin/token`: a new classic token (the previous one dies 5 minutes later).
    pub async fn classic_token(
        &self,
        appid: &AppId,
        secret: &SecretString,
    ) -> Result<FetchedToken, WechatError> {
        const EP: &str = "cgi-bin/token";
        let url = self.url(
            EP,
            &[
                ("grant_type", "client_credential"),
                ("appid", appid.as_str()),
                ("secret", secret.expose_secret()),
            ],
        );
        let raw: RawToken = self.call_token(EP, self.http.get(url)).await?;
        Ok(raw.into())
    }

    /// `POST cgi-bin/stable_token`: the current stable token (the same one for every caller
    /// while it is valid). `force_refresh` invalidates everyone's token: wxnotify never sets it
    /// on its own.
    pub async fn stable_token(
        &self,
        appid: &AppId,
        secret: &SecretString,
        force_refresh: bool,
    ) -> Result<FetchedToken, WechatError> {
        const EP: &str = "cgi-bin/stable_token";
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": appid.as_str(),
            "secret": secret.expose_secret(),
            "force_refresh": force_refresh,
        });
        let raw: RawToken = self
            .call_token(EP, self.http.post(self.url(EP, &[])).json(&body))
            .await?;
        Ok(raw.into())
    }
}

#[derive(Deserialize)]
struct RawToken {
    access_token: String,
    expires_in: u64,
}

impl From<RawToken> for FetchedToken {
    fn from(raw: RawToken) -> Self {
        FetchedToken {
            token: AccessToken::new(raw.access_token),
            expires_in: Duration::from_secs(raw.expires_in),
        }
    }
}
