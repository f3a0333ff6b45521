//! Everything that speaks to WeChat: the HTTP client, the errcode classification, the shared
//! access-token store, secret redaction, the pushes (XML or JSON) and their cryptography
//! (`event`, `crypto`), and the Mini Program's subscribe-message pushes (`mp_event`).
//! The fake WeChat server is in the sandbox crate, which nothing here depends on.

pub mod client;
pub mod crypto;
pub mod errcode;
pub mod event;
pub mod mp_event;
pub mod redact;
pub mod response;
pub mod token;

pub use client::{AccessToken, WechatClient, WechatError};
pub use errcode::{ErrClass, PermanentKind, classify};
pub use token::{OaCredentials, TokenError, TokenSource, TokenStore, check_stored_key};

use sqlx::PgPool;

use crate::config::Settings;
use client::ClientOptions;

/// The WeChat side of a process: one HTTP client and the access-token store over it.
#[derive(Clone)]
pub struct Wechat {
    /// The API client.
    pub client: WechatClient,
    /// Access tokens of every configured app, shared through Postgres.
    pub tokens: TokenStore,
}

impl Wechat {
    /// The client (with `options`) and token store for the apps of `settings` on `pool`.
    pub fn build(
        settings: &Settings,
        pool: &PgPool,
        options: &ClientOptions,
    ) -> anyhow::Result<Self> {
        let client = WechatClient::new(settings.wechat_api_base.clone(), options)?;
        let tokens = TokenStore::with_secrets(
            pool.clone(),
            client.clone(),
            &settings.apps,
            settings.secrets.clone(),
        );
        Ok(Wechat { client, tokens })
    }
}
