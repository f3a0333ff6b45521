//! Mini Program logins: `sns/jscode2session` turns a `wx.login()` code into openid, unionid
//! and session key.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{WechatClient, WechatError};
use crate::domain::{AppId, OpenId, UnionId};

/// A Mini Program login (`jscode2session`). The session key is secret and stays server side.
#[derive(Debug, Clone)]
pub struct MpSession {
    /// The Mini Program openid.
    pub openid: OpenId,
    /// Present only when the Mini Program is bound to an Open Platform account.
    pub unionid: Option<UnionId>,
    /// The session key (never logged, never sent to the client).
    pub session_key: SecretString,
}

impl WechatClient {
    /// `GET sns/jscode2session`: exchanges a `wx.login()` code (single use, 5 minutes) for the
    /// Mini Program openid, unionid and session key.
    pub async fn jscode2session(
        &self,
        appid: &AppId,
        secret: &SecretString,
        code: &str,
    ) -> Result<MpSession, WechatError> {
        const EP: &str = "sns/jscode2session";
        #[derive(Deserialize)]
        struct Raw {
            openid: OpenId,
            #[serde(default)]
            unionid: Option<UnionId>,
            session_key: String,
        }
        let url = self.url(
            EP,
            &[
                ("appid", appid.as_str()),
                ("secret", secret.expose_secret()),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ],
        );
        let raw: Raw = self.call(EP, self.http.get(url)).await?;
        Ok(MpSession {
            openid: raw.openid,
            unionid: raw.unionid,
            session_key: raw.session_key.into(),
        })
    }
}
